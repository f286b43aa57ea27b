/**
 * Child process of `npm run bench -- backup`: runs the S3-protocol server (s3rver) and the Supabase
 * Storage fake on loopback, in a process of their own so the benchmark measures only the
 * controller's side. Prints one JSON line with their addresses, and exits when stdin closes.
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";

import { startFakeSupabaseStorage } from "../../test/fake-supabase-storage/server.ts";
import { startS3Server } from "../../test/helpers/s3-server.ts";

const dir = process.argv[2];
if (!dir) throw new Error("usage: backup-servers.ts DIR");
await mkdir(join(dir, "s3"), { recursive: true });
const s3 = await startS3Server(join(dir, "s3"));
const supabase = await startFakeSupabaseStorage(join(dir, "supabase"));
process.stdout.write(`${JSON.stringify({ s3Endpoint: s3.endpoint, s3Bucket: s3.bucket, supabaseUrl: supabase.url })}\n`);
process.stdin.resume();
process.stdin.once("end", () => {
  void Promise.all([s3.close(), supabase.close()]).finally(() => process.exit(0));
});
