/**
 * The body of the Stripe inbox thread (started by inbox-thread.ts through inbox-thread.mjs): the
 * same `StripeInbox` as in process, with a pool of its own, a private registry whose changes are
 * sent to the daemon every `METRICS_FLUSH_MS`, and a logger that sends its records there. Runs
 * until the daemon sends `stop`, then flushes, closes its pool and ends.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { parentPort, workerData } from "node:worker_threads";

import type { Sql } from "postgres";
import { Registry } from "prom-client";

import { lowerPriority } from "../../nice.ts";
import { connect } from "../../state/db.ts";
import { defaultConcurrency, StripeInbox } from "./inbox.ts";
import type { InboxThreadCommand, InboxThreadConfig, InboxThreadMessage } from "./inbox-thread.ts";
import { INBOX_THREAD_NICE, METRICS_FLUSH_MS } from "./inbox-thread.ts";
import { createStripeMetrics, type StripeMetrics } from "./metrics.ts";
import { createStripeClient } from "./sources.ts";
import type { StripeLogger } from "./webhook.ts";

/**
 * This thread yields the CPU to the daemon's request thread: Linux keeps a nice value per thread
 * (setpriority on the thread's id, from /proc/thread-self), so when both want a core, answering
 * webhooks comes first and applying the backlog takes what is left (the backlog may lag by
 * seconds; an answer may not). Best effort: without /proc (not Linux) the thread keeps the
 * daemon's priority.
 */
function yieldToRequests(): void {
  try {
    lowerPriority(Number(readlinkSync("/proc/thread-self").split("/").pop()), INBOX_THREAD_NICE);
  } catch {
    // Not Linux, or the priority cannot be changed here: run at the daemon's.
  }
}

yieldToRequests();
const port = parentPort!;
const config = workerData as InboxThreadConfig;
const send = (message: InboxThreadMessage): void => port.postMessage(message);

/** A record whose fields cannot be cloned (a function, say) still arrives, with its message. */
function sendLog(level: "info" | "warn" | "error" | "debug", obj: object, msg: string | undefined): void {
  try {
    send({ kind: "log", level, obj, msg });
  } catch {
    send({ kind: "log", level, obj: { fields: "not transferable from the inbox thread" }, msg });
  }
}

const logger: StripeLogger = {
  info: (obj, msg) => sendLog("info", obj, msg),
  warn: (obj, msg) => sendLog("warn", obj, msg),
  error: (obj, msg) => sendLog("error", obj, msg),
  debug: (obj, msg) => {
    if (config.debug) sendLog("debug", obj, msg);
  },
};

/** Counter deltas since the last flush, and the gauges' values. */
function metricsFlusher(metrics: StripeMetrics): () => Promise<void> {
  const sent = new Map<string, number>();
  return async () => {
    const events: { labels: { type: string; result: string }; delta: number }[] = [];
    for (const { labels, value } of (await metrics.events.get()).values) {
      const key = `${labels.type}\u0000${labels.result}`;
      const delta = value - (sent.get(key) ?? 0);
      if (delta === 0) continue;
      sent.set(key, value);
      events.push({ labels: { type: String(labels.type), result: String(labels.result) }, delta });
    }
    const gauge = async (g: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> => (await g.get()).values[0]?.value ?? 0;
    send({ kind: "metrics", events, gauges: { pending: await gauge(metrics.inboxPending), dead: await gauge(metrics.inboxDead), oldestPendingSeconds: await gauge(metrics.inboxOldestPendingSeconds) } });
  };
}

/** The application_name of this thread's sessions: the daemon's, so pool metrics and operators see them as its. */
const SESSION_SUFFIX = ":inbox";
/** How often new sessions of the pool are looked for (one small query on pg_stat_activity). */
const SESSION_PRIORITY_INTERVAL_MS = 1_000;
/** Looks that found this thread's sessions but none on this machine, before it stops looking. */
const REMOTE_CHECKS = 3;

/**
 * Applying events costs Postgres more CPU than the thread itself: when the server runs on this
 * machine (the embedded one, or any local Postgres), the backends serving this thread's sessions
 * run at the thread's nice value as well, so a webhook's insert is not queued behind the
 * backlog's work. Sessions are found by application_name (the pool opens and recycles them);
 * a pid is reniced only when /proc shows it is the Postgres backend of that very session (its
 * client port in the process title), so a server elsewhere, or in another pid namespace, is
 * never touched. After `REMOTE_CHECKS` looks that found sessions but none here, it stops looking.
 * Best effort, as for the thread.
 */
function sessionPrioritizer(sql: Sql, applicationName: string): () => Promise<void> {
  let seen = new Set<number>();
  let remoteChecks = 0;
  return async () => {
    if (remoteChecks >= REMOTE_CHECKS) return;
    const sessions = await sql<{ pid: number; port: number | null }[]>`
      select pid, client_port as port from pg_stat_activity where application_name = ${applicationName}`;
    const local = sessions.filter(({ pid, port }) => port !== null && isLocalBackend(pid, port));
    if (sessions.length > 0 && local.length === 0) remoteChecks += 1;
    for (const { pid } of local) {
      if (seen.has(pid)) continue;
      try {
        lowerPriority(pid, INBOX_THREAD_NICE);
      } catch {
        // Another user's process: left as it is.
      }
    }
    seen = new Set(local.map(({ pid }) => pid));
  };
}

/** Whether `pid` here is a Postgres backend serving the client on `port` ("postgres: user db host(port) ..."). */
function isLocalBackend(pid: number, port: number): boolean {
  try {
    const title = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return title.startsWith("postgres: ") && title.includes(`(${port})`);
  } catch {
    return false;
  }
}

async function run(): Promise<void> {
  const applicationName = `${config.applicationName}${SESSION_SUFFIX}`;
  const sql = connect(config.databaseUrl, { max: config.poolMax, applicationName, statementTimeoutMs: config.statementTimeoutMs });
  const metrics = createStripeMetrics(new Registry());
  // The mode's default concurrency (4 batches at once in API mode, 1 in payload mode), within the pool.
  const stripe = createStripeClient(config.stripe);
  const concurrency = Math.min(config.poolMax, defaultConcurrency(stripe !== null));
  const inbox = new StripeInbox({ sql, stripe, priceTiers: config.stripe.priceTiers, metrics, logger, concurrency, onIdle: () => send({ kind: "idle" }) });
  const stopping = new AbortController();
  port.on("message", (command: InboxThreadCommand) => {
    if (command.kind === "wake") inbox.wake();
    else stopping.abort();
  });
  const flush = metricsFlusher(metrics);
  const flushing = setInterval(() => void flush(), METRICS_FLUSH_MS);
  const prioritize = process.platform === "linux" ? sessionPrioritizer(sql, applicationName) : null;
  const prioritizing = prioritize && setInterval(() => void prioritize().catch(() => {}), SESSION_PRIORITY_INTERVAL_MS);
  try {
    await inbox.start(stopping.signal);
  } finally {
    clearInterval(flushing);
    if (prioritizing) clearInterval(prioritizing);
    await flush();
    await sql.end({ timeout: 5 });
  }
  send({ kind: "stopped" });
  port.close();
  // Idle keep-alive sockets (the Stripe client's) must not hold the thread open.
  setTimeout(() => process.exit(0), 1_000).unref();
}

await run();
