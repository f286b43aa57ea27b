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
    return await measure({ sql: db.sql, baseline, daemon });
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
