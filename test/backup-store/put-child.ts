/**
 * Child process for kill.test.ts: starts a `put` of an endless stream into the store named by
 * argv, prints "streaming" once 12 MiB went in (past the first 8 MiB S3 part), and waits to be killed.
 */
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createS3Store } from "../../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../../src/drivers/backup-store/supabase.ts";
import type { BackupStore } from "../../src/drivers/backup-store/types.ts";
import { FAKE_SERVICE_ROLE_KEY } from "../fake-supabase-storage/server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY } from "../helpers/s3-server.ts";

const [kind = "", target = ""] = process.argv.slice(2);
const stores: Record<string, () => BackupStore> = {
  local: () => createLocalStore(target),
  s3: () => createS3Store({ bucket: "backups", endpoint: target, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "mindroom/" }),
  supabase: () => createSupabaseStore({ url: target, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" }),
};
let sent = 0;
let announced = false;
const endless = new Readable({
  read() {
    const chunk = randomBytes(256 * 1024);
    sent += chunk.length;
    if (sent > 12 * 1024 * 1024 && !announced) {
      announced = true;
      process.stdout.write("streaming\n");
      return; // stall here: the parent kills us mid-upload
    }
    if (!announced) this.push(chunk);
  },
});
void stores[kind]!()
  .put("inst-1/killed.tar.gz.enc", endless)
  .then(() => process.stdout.write("completed\n"));
// A stalled source holds no handle open: keep the process alive until the parent kills it.
setInterval(() => {}, 60_000);
