/**
 * The leader's scheduled jobs (DESIGN section 10): `reset_daily_usage` at 00:00 UTC, and hourly
 * `calculate_storage_usage`, `auto_pause_inactive_instances`, `sweep_api_state` (the API's expired
 * idempotency keys and idle rate-limit buckets) and daily `cleanup_expired_data`.
 * Checked every minute; each runs once per period across replicas (src/state/jobs.ts).
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import type { Logger } from "../logger.ts";
import { JOB_NAMES, type JobName, recordJobError, runJobOnce } from "../state/jobs.ts";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const CHECK_EVERY_MS = 60_000;

/** Each job's period length; periods are aligned to UTC (a day starts at 00:00 UTC). */
export const JOB_PERIODS: Readonly<Record<JobName, number>> = {
  reset_daily_usage: DAY_MS,
  cleanup_expired_data: DAY_MS,
  auto_pause_inactive_instances: HOUR_MS,
  calculate_storage_usage: HOUR_MS,
  sweep_api_state: HOUR_MS,
};

/** Start of the period containing `now` (pure). */
export function periodStart(now: Date, periodMs: number): Date {
  return new Date(Math.floor(now.getTime() / periodMs) * periodMs);
}

/** Runs every job whose current period has not run yet. */
export async function runDueJobs(sql: Sql, now: Date, logger: Pick<Logger, "info" | "error">): Promise<JobName[]> {
  const ran: JobName[] = [];
  for (const name of JOB_NAMES) {
    try {
      const outcome = await runJobOnce(sql, name, periodStart(now, JOB_PERIODS[name]));
      if (outcome) {
        ran.push(name);
        logger.info({ job: name, result: outcome.result }, "scheduled job ran");
      }
    } catch (error) {
      logger.error({ job: name, err: error }, "scheduled job failed; it runs again at the next check");
      await recordJobError(sql, name, (error as Error).message).catch(() => {});
    }
  }
  return ran;
}

/** Resolves when `signal` aborts. */
export async function runScheduledJobs(sql: Sql, now: () => Date, logger: Pick<Logger, "info" | "error">, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await runDueJobs(sql, now(), logger);
    await sleep(CHECK_EVERY_MS, undefined, { signal }).catch(() => {});
  }
}
