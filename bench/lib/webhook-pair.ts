/**
 * The daemon and the minimal baseline handler side by side on one fresh database, for the
 * benchmarks that compare them (webhook.ts, bursts.ts): both started, put with Postgres behind
 * the load generators for the CPU (priority.ts), handed to `measure`, and stopped with the
 * database whatever happens. Also the daemon's inbox backlog, which both read.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import { loadConfig } from "../../src/config.ts";
import { type BenchPostgres, openBenchPostgres } from "./pg.ts";
import { lowerDescendants } from "./priority.ts";
import { type Endpoint, startBaseline, startDaemon } from "./webhook-processes.ts";

/** The daemon's webhook pool (src/main.ts WEBHOOK_POOL_MAX); the baseline gets as many connections. */
const WEBHOOK_POOL_MAX = 6;
const DRAIN_LIMIT_MS = 300_000;
/** Nice steps between the load generators and what they measure (priority.ts). */
const SERVER_NICE_STEPS = 5;

export interface WebhookPair {
  /** The database both store into (DATABASE_URL's server, or an embedded one). */
  readonly sql: Sql;
  readonly baseline: Endpoint;
  readonly daemon: Endpoint;
  /** A scratch directory of the run, on this machine's temporary disk (the embedded database's). */
  readonly dir: string;
}

export async function withWebhookPair<T>(options: { label: string; secret: string; cpuProfDir?: string | undefined }, measure: (pair: WebhookPair) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `mindroom-bench-${options.label}-`));
  const stops: Array<() => Promise<void>> = [];
  let pg: BenchPostgres | undefined;
  try {
    pg = await openBenchPostgres(loadConfig({ DATABASE_URL: process.env.DATABASE_URL }).databaseUrl);
    const db = await pg.createDatabase(options.label, { max: 1 });
    const baseline = await startBaseline({ databaseUrl: db.url, secret: options.secret, poolMax: WEBHOOK_POOL_MAX });
    stops.push(() => baseline.stop());
    const daemon = await startDaemon({ databaseUrl: db.url, secret: options.secret, dir, ...(options.cpuProfDir && { cpuProfDir: options.cpuProfDir }) });
    stops.push(() => daemon.stop());
    // Before any generator is forked: Postgres, the daemon and the baseline yield the CPU to them.
    if (lowerDescendants(SERVER_NICE_STEPS) === 0) process.stderr.write(`bench ${options.label}: could not lower the servers' priority; the generator competes with them for the CPU\n`);
    return await measure({ sql: db.sql, baseline, daemon, dir });
  } finally {
    for (const stop of stops.reverse()) await stop().catch((error: unknown) => process.stderr.write(`bench ${options.label}: cleanup failed: ${String(error)}\n`));
    await pg?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Events the daemon's inbox has yet to handle. */
export const pendingCount = async (sql: Sql): Promise<number> => (await sql<{ n: number }[]>`select count(*)::int as n from public.stripe_events where status = 'pending'`)[0]!.n;

/** Waits until the daemon's inbox has nothing pending; returns how long that took (seconds). */
export async function drainInbox(sql: Sql): Promise<number> {
  const started = performance.now();
  for (;;) {
    const pending = await pendingCount(sql);
    if (pending === 0) return Math.round(performance.now() - started) / 1000;
    if (performance.now() - started > DRAIN_LIMIT_MS) throw new Error(`the daemon's inbox still had ${pending} pending events ${DRAIN_LIMIT_MS / 1000} s after the load stopped`);
    await sleep(100);
  }
}

/**
 * Does now the upkeep a round left due, so that it is not done during the next round, beside
 * another handler: waits for the autovacuum workers at work in the database, then vacuums and
 * analyzes each table past autovacuum's thresholds, as autovacuum would within its next
 * `autovacuum_naptime` (a minute by default). What comes due during a round is done by
 * autovacuum during that round, and counts against that round's handler. Returns the seconds it
 * took, which the report shows as the round's upkeep.
 */
export async function finishUpkeep(sql: Sql): Promise<number> {
  const started = performance.now();
  while (await autovacuumWorkers(sql) > 0) {
    if (performance.now() - started > UPKEEP_LIMIT_MS) throw new Error(`autovacuum was still at work ${UPKEEP_LIMIT_MS / 1000} s after the round`);
    await sleep(200);
  }
  // `table` is quoted by Postgres's format('%I.%I'): VACUUM takes no parameter.
  for (const { table } of await tablesDue(sql)) await sql.unsafe(`vacuum (analyze) ${table}`);
  return Math.round(performance.now() - started) / 1000;
}

const UPKEEP_LIMIT_MS = 300_000;

const autovacuumWorkers = async (sql: Sql): Promise<number> =>
  (await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where backend_type = 'autovacuum worker' and datname = current_database()`)[0]!.n;

/**
 * The tables autovacuum would vacuum or analyze next: PostgreSQL's thresholds (18's insert
 * threshold counts only the pages not yet frozen; an older server has no `relallfrozen` and counts
 * them all), without per-table settings, which no table here has.
 */
async function tablesDue(sql: Sql): Promise<{ table: string }[]> {
  return sql<{ table: string }[]>`
    with setting as (
      select current_setting('autovacuum_vacuum_threshold')::float8 as vac_base,
             current_setting('autovacuum_vacuum_scale_factor')::float8 as vac_scale,
             coalesce(nullif(current_setting('autovacuum_vacuum_max_threshold', true), '-1')::float8, 'Infinity') as vac_max,
             current_setting('autovacuum_vacuum_insert_threshold')::float8 as ins_base,
             current_setting('autovacuum_vacuum_insert_scale_factor')::float8 as ins_scale,
             current_setting('autovacuum_analyze_threshold')::float8 as an_base,
             current_setting('autovacuum_analyze_scale_factor')::float8 as an_scale
    )
    select format('%I.%I', t.schemaname, t.relname) as table
    from pg_stat_user_tables t join pg_class c on c.oid = t.relid, setting,
         lateral (select greatest(c.reltuples, 0) as tuples,
                         case when c.relpages > 0 then 1 - coalesce((to_jsonb(c) ->> 'relallfrozen')::float8, 0) / c.relpages else 1 end as unfrozen) x
    where t.n_dead_tup > least(vac_max, vac_base + vac_scale * tuples)
       or (ins_base >= 0 and t.n_ins_since_vacuum > ins_base + ins_scale * tuples * unfrozen)
       or t.n_mod_since_analyze > an_base + an_scale * tuples`;
}
