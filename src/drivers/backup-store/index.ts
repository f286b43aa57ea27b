/** Chooses the backup store from the configuration (placeholder until the s3 and supabase stores land). */
import { resolve } from "node:path";

import type { Config } from "../../config.ts";
import { createLocalStore } from "./local.ts";
import type { BackupStore } from "./types.ts";

export function createBackupStore(config: Config): BackupStore {
  return createLocalStore(resolve(config.dataDir));
}
