/**
 * Chooses the backup store from configuration (BACKUP_STORE): `local` (default), `s3` or `supabase`.
 * Building a store does no I/O; the first call reaches the service (the Supabase store creates its
 * bucket on first `put`). Callers run `cleanupStale` once at start-up, on the leader.
 */
import type { Config } from "../../config.ts";
import { createLocalStore } from "./local.ts";
import { createS3Store } from "./s3.ts";
import { createSupabaseStore } from "./supabase.ts";
import type { BackupStore } from "./types.ts";

export { backupKeyId, decryptStream, encryptStream, measureStream, verifyStream } from "./crypto.ts";
export type { BackupStore, BackupStoreKind, StoredObject } from "./types.ts";

export function createBackupStore(config: Pick<Config, "backupStore" | "s3" | "supabase">, dataDir: string): BackupStore {
  switch (config.backupStore) {
    case "local":
      return createLocalStore(dataDir);
    case "s3": {
      const { bucket, accessKeyId, secretAccessKey } = config.s3;
      // loadConfig refuses BACKUP_STORE=s3 without these; a hand-built Config gets the same error.
      if (!bucket || !accessKeyId || !secretAccessKey) throw new Error("BACKUP_STORE: s3 needs S3_BUCKET, S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY to be set");
      return createS3Store({ ...config.s3, bucket, accessKeyId, secretAccessKey });
    }
    case "supabase": {
      const { url, serviceRoleKey, backupBucket } = config.supabase;
      if (!url || !serviceRoleKey) throw new Error("BACKUP_STORE: supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to be set");
      return createSupabaseStore({ url, serviceRoleKey, bucket: backupBucket });
    }
  }
}
