/**
 * The leader's backup jobs (DESIGN section 10), checked every minute:
 * - schedule: a `requested` automatic backup for each paid instance whose daily slot passed (the
 *   instance's pass then takes it, within the host's concurrency limit);
 * - retention: completed backups past `expires_at` are deleted from the store first and marked
 *   `expired` after, so a crash in between only repeats an idempotent delete;
 * - verification: once a week, a random sample is read back, decrypted and listed;
 * - the overdue gauge.
 * Inserts are guarded in SQL, so a leader change mid-check cannot request a slot twice.
 */
import { spawn } from "node:child_process";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import type { BackupStore } from "../drivers/backup-store/types.ts";
import type { Logger } from "../logger.ts";
import { dailyBackupDue, latestSlot } from "../reconciler/backup-policy.ts";
import { expiredBackups, markExpired, markVerified, overdueBackups, queueOverdueAlert, requestAutomaticBackup, sampleCompleted, scheduleRows } from "../state/backups.ts";
import { claimPeriod } from "../state/jobs.ts";
import type { BackupMetrics } from "./backup-metrics.ts";
import { openArchive } from "./backups.ts";

const CHECK_EVERY_MS = 60_000;
const WEEK_MS = 7 * 86_400_000;
const EXPIRE_BATCH = 200;
const VERIFY_SAMPLE = 5;

export interface BackupJobsWiring {
  readonly sql: Sql;
  readonly store: BackupStore;
  readonly masterKey: string;
  readonly dailyAtMinute: number;
  readonly retentionMs: number;
  readonly metrics?: BackupMetrics;
  readonly logger: Pick<Logger, "info" | "warn" | "error">;
}

/** Requests every due daily backup; returns how many were requested. */
export async function scheduleDailyBackups(wiring: BackupJobsWiring, now: Date): Promise<number> {
  let requested = 0;
  for (const row of await scheduleRows(wiring.sql)) {
    const slot = latestSlot(row.instanceId, now, wiring.dailyAtMinute);
    const state = { ...row, failedSinceSlot: row.failedAt.filter((at) => at >= slot).length };
    if (!dailyBackupDue(state, now, wiring.dailyAtMinute)) continue;
    if (await requestAutomaticBackup(wiring.sql, row.instanceId, slot, now, wiring.retentionMs)) requested += 1;
  }
  return requested;
}

/** Deletes expired backups' objects, then marks them; returns how many expired. */
export async function expireBackups(wiring: Pick<BackupJobsWiring, "sql" | "store">, now: Date): Promise<number> {
  let expired = 0;
  for (const backup of await expiredBackups(wiring.sql, now, EXPIRE_BATCH)) {
    if (backup.location) await wiring.store.delete(backup.location);
    await markExpired(wiring.sql, backup.id);
    expired += 1;
  }
  return expired;
}

/** Reads a backup back: sha256, size, every encrypted chunk, and a clean `tar -tz` listing. */
export async function verifyBackup(wiring: Pick<BackupJobsWiring, "sql" | "store" | "masterKey">, backupId: string, now: Date): Promise<number> {
  const archive = await openArchive(wiring, backupId);
  const tar = spawn("tar", ["-tzf", "-"], { stdio: ["pipe", "pipe", "pipe"] });
  let entries = 0;
  let stderr = "";
  tar.stdout.on("data", (chunk: Buffer) => (entries += chunk.toString("utf8").split("\n").length - 1));
  tar.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const exited = new Promise<number>((resolve, reject) => {
    tar.on("error", reject);
    tar.on("close", (code) => resolve(code ?? 1));
  });
  await pipeline(archive, tar.stdin);
  const code = await exited;
  if (code !== 0) throw new Error(`the archive does not list as tar.gz: ${stderr.trim().slice(0, 200) || `tar exited ${code}`}`);
  await markVerified(wiring.sql, backupId, now);
  return entries;
}

async function verifySample(wiring: BackupJobsWiring, now: Date): Promise<void> {
  for (const backup of await sampleCompleted(wiring.sql, VERIFY_SAMPLE)) {
    try {
      await verifyBackup(wiring, backup.id, now);
      wiring.metrics?.verifications.inc({ result: "success" });
    } catch (error) {
      wiring.metrics?.verifications.inc({ result: "failure" });
      wiring.logger.error({ backup: backup.id, instance: backup.instanceId, err: error }, "backup verification failed");
    }
  }
}

/** The overdue gauge, and one operator email a day while any paid instance is overdue. */
async function reportOverdue(wiring: BackupJobsWiring, now: Date): Promise<void> {
  const overdue = await overdueBackups(wiring.sql);
  wiring.metrics?.overdue.set(overdue);
  if (overdue > 0) await queueOverdueAlert(wiring.sql, overdue, now.toISOString().slice(0, 10));
}

/** One check of every backup job; errors are logged and the next check tries again. */
export async function runBackupChecks(wiring: BackupJobsWiring, now: Date): Promise<void> {
  const steps: [string, () => Promise<unknown>][] = [
    ["schedule", () => scheduleDailyBackups(wiring, now)],
    ["expire", () => expireBackups(wiring, now)],
    ["verify", async () => ((await claimPeriod(wiring.sql, "backup_verification", new Date(Math.floor(now.getTime() / WEEK_MS) * WEEK_MS))) ? verifySample(wiring, now) : undefined)],
    ["overdue", () => reportOverdue(wiring, now)],
  ];
  for (const [job, run] of steps) {
    try {
      const result = await run();
      if (typeof result === "number" && result > 0) wiring.logger.info({ job: `backup_${job}`, result }, "backup job ran");
    } catch (error) {
      wiring.logger.error({ job: `backup_${job}`, err: error }, "backup job failed; it runs again at the next check");
    }
  }
}

/** Resolves when `signal` aborts. */
export async function runBackupJobs(wiring: BackupJobsWiring, now: () => Date, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await runBackupChecks(wiring, now());
    await sleep(CHECK_EVERY_MS, undefined, { signal }).catch(() => {});
  }
}
