/**
 * The backup round trip through the controller, for every store (issue 8): known files in an
 * instance's storage on the sandbox are backed up into the store (local on disk, s3 on an S3
 * server on loopback, supabase on the Storage API fake), wiped, restored, and compared byte for
 * byte; what the store holds is neither gzip nor the plaintext.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createS3Store } from "../../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../../src/drivers/backup-store/supabase.ts";
import type { BackupStore } from "../../src/drivers/backup-store/types.ts";
import { FAKE_SERVICE_ROLE_KEY, startFakeSupabaseStorage } from "../fake-supabase-storage/server.ts";
import { snapshotDir } from "../helpers/files.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, startS3Server } from "../helpers/s3-server.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

const MARKER = "plaintext that must never reach a store";

type StoreKind = "local" | "s3" | "supabase";

async function openStore(kind: StoreKind, dir: string): Promise<{ store: BackupStore; close: () => Promise<void> }> {
  switch (kind) {
    case "local":
      return { store: createLocalStore(dir), close: async () => {} };
    case "s3": {
      const server = await startS3Server(dir);
      const store = createS3Store({ bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "mindroom/" });
      return { store, close: () => server.close() };
    }
    case "supabase": {
      const fake = await startFakeSupabaseStorage(dir);
      return { store: createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" }), close: () => fake.close() };
    }
  }
}

describe.each(["local", "s3", "supabase"] as const)("the %s store", (kind) => {
  let h: Harness;
  let storeDir: string;
  let opened: Awaited<ReturnType<typeof openStore>>;

  beforeAll(async () => {
    storeDir = mkdtempSync(join(tmpdir(), `mindroom-e2e-${kind}-`));
    opened = await openStore(kind, storeDir);
    h = await startHarness({ seed: false, backupStore: opened.store });
  }, 120_000);

  afterAll(async () => {
    await h?.stop();
    await opened?.close();
    rmSync(storeDir, { recursive: true, force: true });
  });

  test("backup, wipe, restore: byte for byte; the stored object is not gzip and holds no plaintext", async () => {
    // One transaction: the running controller provisions an active subscription it sees without an
    // instance, so a subscription committed on its own could get its instance before ours.
    const created = await h.db.sql.begin(async (tx) => {
      const [account] = await tx<{ id: string }[]>`insert into accounts (email) values (${`${kind}@example.com`}) returning id`;
      const [sub] = await tx<{ id: string }[]>`insert into subscriptions (account_id, tier, status) values (${account!.id}, 'starter', 'active') returning id`;
      const [row] = await tx<{ id: string }[]>`select provision_instance(${sub!.id}) as id`;
      return row;
    });
    const [inst] = await h.db.sql<{ id: string; subdomain: string }[]>`select id, subdomain from instances where id = ${created!.id}`;
    await eventually("the instance runs", () => appsOf(inst!.subdomain).every((app) => h.sandbox.control.app(app)?.running === true), 60_000);
    const dir = h.sandbox.control.storageDir(`${inst!.subdomain}-backend-data`);
    mkdirSync(join(dir, "nested"), { recursive: true });
    writeFileSync(join(dir, "nested", "blob.bin"), Buffer.from(Array.from({ length: 1_500_000 }, (_, i) => (i * 7919) % 251)));
    writeFileSync(join(dir, "notes.txt"), `${MARKER}\n`.repeat(500));
    const original = snapshotDir(dir);

    const [request] = await h.db.sql<{ id: string }[]>`insert into instance_backups (instance_id, component) values (${inst!.id}, 'backend') returning id`;
    let backup: { status: string; location: string | null } | undefined;
    await eventually("the backup finished", async () => {
      [backup] = await h.db.sql<{ status: string; location: string | null }[]>`select status::text as status, location from instance_backups where id = ${request!.id}`;
      return backup?.status === "completed" || backup?.status === "failed";
    }, 60_000);
    expect(backup?.status).toBe("completed");
    expect(backup!.location!.startsWith(kind === "local" ? "local:" : `${kind}://`)).toBe(true);
    const stored = await buffer(await opened.store.get(backup!.location!));
    expect(stored.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b])), "not gzip").toBe(false);
    expect(stored.includes(Buffer.from(MARKER)), "no plaintext").toBe(false);

    for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
    writeFileSync(join(dir, "written-later.txt"), "must be gone after the restore");
    const [restore] = await h.db.sql<{ id: string }[]>`insert into instance_restores (backup_id, instance_id) values (${request!.id}, ${inst!.id}) returning id`;
    await eventually("the restore finished", async () => {
      const [row] = await h.db.sql<{ status: string }[]>`select status::text as status from instance_restores where id = ${restore!.id}`;
      return row?.status === "completed" || row?.status === "failed";
    }, 60_000);
    const [row] = await h.db.sql<{ status: string; error: string | null }[]>`select status::text as status, error from instance_restores where id = ${restore!.id}`;
    expect(row).toEqual({ status: "completed", error: null });
    expect(snapshotDir(dir)).toEqual(original);
  }, 150_000);
});
