/**
 * Supervision of the embedded Postgres that `serve` owns: when its postmaster dies (killed, OOM,
 * crashed), start it again on the same data directory and port, so the pool reconnects by itself
 * and nothing else notices more than a few failed queries.
 *
 * Contract
 * - Only the process that holds the DATA_DIR lock and owns the server (src/main.ts, `serve`) starts
 *   a supervisor; a guest command never does, so it never restarts a server it does not own.
 * - Death is read from `postmaster.pid` (the pid there no longer alive, or the file gone). A frozen
 *   server (SIGSTOP) is alive: it is waited out, never restarted.
 * - Each death is followed by a restart after a backoff (base × 2^(n-1) for the n-th death in the
 *   window), retried a few times when Postgres refuses to start yet (its old backends still
 *   exiting). Every successful restart is logged and counted in
 *   `mindroom_embedded_postgres_restarts_total`.
 * - Budget: at most `budget` deaths (5) within `windowMs` (10 minutes). One more, or a restart that
 *   keeps failing, calls `onExhausted` with the reason: the daemon then exits 1 and its own
 *   supervisor (systemd, Kubernetes) restarts everything, which is the better remedy for a server
 *   that keeps dying.
 */
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { Counter, type Registry } from "prom-client";

import type { OwnedEmbeddedServer } from "./db.ts";
import { runningServer } from "./embedded.ts";

export interface SupervisorLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SupervisorOptions {
  readonly server: OwnedEmbeddedServer;
  readonly registry: Registry;
  readonly logger: SupervisorLogger;
  /** Called once when the budget is spent or a restart cannot succeed; supervision then ends. */
  readonly onExhausted: (reason: string) => void;
  readonly checkIntervalMs?: number;
  readonly budget?: number;
  readonly windowMs?: number;
  readonly baseBackoffMs?: number;
  /** Start attempts per death before giving up. */
  readonly startAttempts?: number;
  /** One start attempt may take this long (embedded-postgres itself never times out). */
  readonly startTimeoutMs?: number;
}

export const SUPERVISOR_DEFAULTS = {
  checkIntervalMs: 1_000,
  budget: 5,
  windowMs: 10 * 60_000,
  baseBackoffMs: 500,
  startAttempts: 4,
  startTimeoutMs: 60_000,
} as const;

export interface Supervisor {
  /** Ends supervision (before the server itself is stopped). Idempotent. */
  stop(): Promise<void>;
}

export function superviseEmbeddedPostgres(options: SupervisorOptions): Supervisor {
  const settings = { ...SUPERVISOR_DEFAULTS, ...definedOnly(options) };
  const restarts = new Counter({
    name: "mindroom_embedded_postgres_restarts_total",
    help: "Restarts of the embedded Postgres this daemon owns, after it died",
    registers: [options.registry],
  });
  const stopping = new AbortController();
  const deaths: number[] = [];
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      await sleep(settings.checkIntervalMs, undefined, { signal: stopping.signal }).catch(() => {});
      if (stopping.signal.aborted || (await runningServer(resolve(options.server.dataDir)))) continue;
      const now = Date.now();
      deaths.push(now);
      while (deaths.length > 0 && deaths[0]! <= now - settings.windowMs) deaths.shift();
      if (deaths.length > settings.budget) {
        options.onExhausted(`embedded Postgres died ${deaths.length} times within ${settings.windowMs / 60_000} minutes (budget ${settings.budget})`);
        return;
      }
      const failure = await restartAfterDeath(options, settings, deaths.length, stopping.signal);
      if (failure !== undefined) {
        options.onExhausted(failure);
        return;
      }
      if (!stopping.signal.aborted) restarts.inc();
    }
  })();
  return {
    stop: async () => {
      stopping.abort();
      await loop;
    },
  };
}

type Settings = typeof SUPERVISOR_DEFAULTS;
const MAX_BACKOFF_MS = 30_000;

/** Undefined once restarted (or stopping), else why it could not be. */
async function restartAfterDeath(options: SupervisorOptions, settings: Settings, death: number, signal: AbortSignal): Promise<string | undefined> {
  const { server, logger } = options;
  let lastError: unknown;
  for (let attempt = 1; attempt <= settings.startAttempts; attempt++) {
    const backoffMs = Math.min(MAX_BACKOFF_MS, settings.baseBackoffMs * 2 ** (death - 1 + attempt - 1));
    logger.warn({ death, attempt, backoffMs, port: server.port }, `embedded Postgres is not running: restarting it in ${backoffMs} ms on the same data directory`);
    await sleep(backoffMs, undefined, { signal }).catch(() => {});
    if (signal.aborted) return undefined;
    try {
      await withTimeout(server.restart(), settings.startTimeoutMs);
      logger.warn({ death, attempt, port: server.port }, "embedded Postgres restarted");
      return undefined;
    } catch (error) {
      lastError = error;
      logger.error({ err: error, death, attempt }, "embedded Postgres did not start");
    }
  }
  return `embedded Postgres could not be restarted after ${settings.startAttempts} attempts: ${(lastError as Error | undefined)?.message ?? "unknown error"}`;
}

async function withTimeout(work: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no "ready to accept connections" within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function definedOnly(options: SupervisorOptions): Partial<Settings> {
  const keys = Object.keys(SUPERVISOR_DEFAULTS) as (keyof Settings)[];
  return Object.fromEntries(keys.filter((key) => options[key] !== undefined).map((key) => [key, options[key]])) as Partial<Settings>;
}
