/**
 * Scheduled jobs over Postgres: claim a period and run the job's SQL in one transaction, so a job
 * runs once per period whichever replica leads (migrations/0006).
 */
import type { Sql, TransactionSql } from "postgres";

import { sweepApiState } from "./api-limits.ts";
import type { Db } from "./sql.ts";

export type JobName = "reset_daily_usage" | "cleanup_expired_data" | "auto_pause_inactive_instances" | "calculate_storage_usage" | "sweep_api_state";

/** The SQL of each job; the functions are defined in migrations/0004, the sweep in api-limits.ts. */
const JOBS: Record<JobName, (tx: TransactionSql) => Promise<unknown>> = {
  reset_daily_usage: async (tx) => (await tx<{ result: number }[]>`select public.reset_daily_usage() as result`)[0]?.result,
  cleanup_expired_data: async (tx) => (await tx<{ result: unknown }[]>`select public.cleanup_expired_data() as result`)[0]?.result,
  auto_pause_inactive_instances: async (tx) => (await tx<{ result: number }[]>`select public.auto_pause_inactive_instances() as result`)[0]?.result,
  calculate_storage_usage: async (tx) => (await tx<{ result: number }[]>`select public.calculate_all_storage_usage() as result`)[0]?.result,
  sweep_api_state: (tx) => sweepApiState(tx),
};

export const JOB_NAMES = Object.keys(JOBS) as JobName[];

/**
 * Runs `name` for the period starting at `periodStart` unless that period (or a later one) was
 * already run. Returns the job's result, or undefined when it had already run.
 */
export async function runJobOnce(sql: Sql, name: JobName, periodStart: Date): Promise<{ result: unknown } | undefined> {
  return sql.begin(async (tx) => {
    if (!(await claimPeriod(tx, name, periodStart))) return undefined;
    const result = await JOBS[name](tx);
    await tx`update public.scheduled_jobs set last_result = ${tx.json({ result: result ?? null } as never)}, last_error = null where name = ${name}`;
    return { result };
  });
}

export async function recordJobError(sql: Sql, name: JobName, error: string): Promise<void> {
  await sql`
    insert into public.scheduled_jobs (name, last_error) values (${name}, ${error})
    on conflict (name) do update set last_error = excluded.last_error`;
}

/**
 * Claims the period starting at `periodStart` for job `name`: true for exactly one caller per
 * period across replicas. Jobs whose work is not SQL (backup verification) claim it on its own.
 */
export async function claimPeriod(sql: Db, name: string, periodStart: Date): Promise<boolean> {
  const claimed = await sql`
    insert into public.scheduled_jobs (name, last_period_start, last_run_at)
    values (${name}, ${periodStart}, now())
    on conflict (name) do update set last_period_start = excluded.last_period_start, last_run_at = now()
      where public.scheduled_jobs.last_period_start is null or public.scheduled_jobs.last_period_start < excluded.last_period_start
    returning name`;
  return claimed.count === 1;
}
