/**
 * Backup and restore metrics (issue 8). Labels are low-cardinality: the store kind, the backup
 * type, a result; never an instance or backup id. Every series exists at zero from the start.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

import type { BackupStoreKind } from "../drivers/backup-store/types.ts";
import { BACKUP_TYPES } from "../reconciler/types.ts";

export const BACKUP_RESULTS = ["success", "failure"] as const;
export type BackupResult = (typeof BACKUP_RESULTS)[number];

/** Archives of a few MB to tens of GB, over seconds to hours. */
const DURATION_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200];

export interface BackupMetrics {
  readonly duration: Histogram<"store">;
  readonly bytes: Counter<"store">;
  readonly backups: Counter<"type" | "result">;
  readonly overdue: Gauge;
  readonly restores: Counter<"result">;
  readonly verifications: Counter<"result">;
}

export function createBackupMetrics(registry: Registry, store: BackupStoreKind): BackupMetrics {
  const registers = [registry];
  const metrics: BackupMetrics = {
    duration: new Histogram({ name: "mindroom_backup_duration_seconds", help: "Time to stream, encrypt and store one component's archive", labelNames: ["store"], buckets: DURATION_BUCKETS, registers }),
    bytes: new Counter({ name: "mindroom_backup_bytes_total", help: "Encrypted bytes written to the backup store", labelNames: ["store"], registers }),
    backups: new Counter({ name: "mindroom_backups_total", help: "Backups of one component that ended, by type and result", labelNames: ["type", "result"], registers }),
    overdue: new Gauge({ name: "mindroom_backups_overdue", help: "Live paid instances with no completed backup in the last 26 hours", registers }),
    restores: new Counter({ name: "mindroom_restores_total", help: "Restores that ended, by result", labelNames: ["result"], registers }),
    verifications: new Counter({ name: "mindroom_backup_verifications_total", help: "Backups read back, decrypted and listed by the weekly verification, by result", labelNames: ["result"], registers }),
  };
  metrics.duration.zero({ store });
  metrics.bytes.inc({ store }, 0);
  for (const type of BACKUP_TYPES) for (const result of BACKUP_RESULTS) metrics.backups.inc({ type, result }, 0);
  for (const result of BACKUP_RESULTS) {
    metrics.restores.inc({ result }, 0);
    metrics.verifications.inc({ result }, 0);
  }
  metrics.overdue.set(0);
  return metrics;
}
