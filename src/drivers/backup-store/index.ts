/**
 * Chooses the backup store from configuration (BACKUP_STORE): `local` (default), `s3` or `supabase`.
 * Building a store does no I/O; the first call reaches the service (the Supabase store creates its
 * bucket on first `put`). Callers run `cleanupStale` once at start-up, on the leader.
 */
import type { Config } from "../../config.ts";
import { once } from "../../once.ts";
import { createLocalStore } from "./local.ts";
import type { BackupStore, BackupStoreKind } from "./types.ts";

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
      return loadedOnFirstUse("s3", async () => (await import("./s3.ts")).createS3Store({ ...config.s3, bucket, accessKeyId, secretAccessKey }));
    }
    case "supabase": {
      const { url, serviceRoleKey, backupBucket } = config.supabase;
      if (!url || !serviceRoleKey) throw new Error("BACKUP_STORE: supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to be set");
      return loadedOnFirstUse("supabase", async () => (await import("./supabase.ts")).createSupabaseStore({ url, serviceRoleKey, bucket: backupBucket }));
    }
  }
}

/**
 * A store whose module, and the SDK it carries, is loaded on its first call: a daemon that keeps
 * its backups elsewhere does not hold the AWS SDK (about 5 MB of heap) or Supabase's client.
 */
function loadedOnFirstUse(kind: BackupStoreKind, load: () => Promise<BackupStore>): BackupStore {
  const loaded = once(load);
  return {
    kind,
    put: async (key, body, signal) => (await loaded()).put(key, body, signal),
    get: async (location, signal) => (await loaded()).get(location, signal),
    delete: async (location, signal) => (await loaded()).delete(location, signal),
    cleanupStale: async (olderThanMs, signal) => (await loaded()).cleanupStale(olderThanMs, signal),
  };
}
