/**
 * The inbox worker on an event loop of its own (a `worker_threads` thread), so that applying
 * events never delays the answers of `POST /webhooks/stripe` on the daemon's loop: under a burst
 * the worker runs thousands of statements a second, and on the shared loop their socket writes,
 * result parsing and garbage landed between the webhook's requests (issue 12).
 *
 * The thread (inbox-thread-main.ts) has its own connection pool (`poolMax`, the inbox's
 * concurrency) and runs the same `StripeInbox`. It owns nothing else: its metrics are forwarded
 * here every `METRICS_FLUSH_MS` (counter deltas, gauge values) onto the daemon's registry, its log
 * records onto the daemon's logger. `wake()` sends a message only while the thread is idle (it says
 * when it starts waiting), so a busy worker costs the webhook no message per event; a wake that
 * crosses the thread's "idle" is sent when that arrives. A thread that dies is
 * fatal (`onFatal`): the daemon exits 1 so its supervisor restarts it, rather than run on without
 * applying events. On Linux the thread runs `INBOX_THREAD_NICE` nice steps below the request thread.
 */
import { Worker } from "node:worker_threads";

import type { PriceTierMap } from "./map.ts";
import type { StripeMetrics } from "./metrics.ts";
import type { StripeLogger } from "./webhook.ts";

/** What the thread needs to run (structured-cloned into it). */
export interface InboxThreadConfig {
  readonly databaseUrl: string;
  readonly applicationName: string;
  readonly poolMax: number;
  readonly statementTimeoutMs: number;
  readonly stripe: { readonly apiKey: string | undefined; readonly apiBase: string | undefined; readonly priceTiers: PriceTierMap };
  /** Whether `debug` records are wanted (they are not sent across otherwise: one per event). */
  readonly debug: boolean;
}

/** Thread → daemon. */
export type InboxThreadMessage =
  | { readonly kind: "metrics"; readonly events: readonly { labels: { type: string; result: string }; delta: number }[]; readonly gauges: InboxGauges }
  | { readonly kind: "log"; readonly level: "info" | "warn" | "error" | "debug"; readonly obj: object; readonly msg: string | undefined }
  | { readonly kind: "idle" }
  | { readonly kind: "stopped" };

export interface InboxGauges {
  readonly pending: number;
  readonly dead: number;
  readonly oldestPendingSeconds: number;
}

/** Daemon → thread. */
export type InboxThreadCommand = { readonly kind: "wake" } | { readonly kind: "stop" };

export const METRICS_FLUSH_MS = 500;
/** On Linux the thread's nice value is this much above the daemon's (inbox-thread-main.ts): it yields the CPU to the webhook's thread. */
export const INBOX_THREAD_NICE = 10;
/** How long a stopping thread may take to finish its pass before it is terminated. */
const STOP_MS = 15_000;

export interface InboxThread {
  wake(): void;
  /** Ends the thread's loop after its current pass (terminated after `STOP_MS`). Idempotent. */
  stop(): Promise<void>;
}

/** Built (dist/, .js): the thread's own module; the sources (.ts, under tsx): a bootstrap that registers tsx first. */
const ENTRY = import.meta.url.endsWith(".js") ? new URL("./inbox-thread-main.js", import.meta.url) : new URL("./inbox-thread.mjs", import.meta.url);

export function startInboxThread(config: InboxThreadConfig, deps: { metrics: StripeMetrics; logger: StripeLogger; onFatal: (reason: string) => void }): InboxThread {
  const worker = new Worker(ENTRY, { workerData: config, name: "stripe-inbox" });
  let stopping = false;
  const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
  const waking = idleAwareWake(() => worker.postMessage({ kind: "wake" } satisfies InboxThreadCommand));
  worker.on("message", (message: InboxThreadMessage) => (message.kind === "idle" ? waking.idle() : receive(message, deps)));
  worker.on("error", (error) => deps.logger.error({ err: { name: error.name, message: error.message } }, "stripe inbox thread failed"));
  worker.once("exit", (code) => {
    if (!stopping) deps.onFatal(`the Stripe inbox thread exited unexpectedly (code ${code})`);
  });
  let stopped: Promise<void> | undefined;
  return {
    wake: waking.wake,
    stop: () =>
      (stopped ??= (async () => {
        stopping = true;
        worker.postMessage({ kind: "stop" } satisfies InboxThreadCommand);
        const timer = setTimeout(() => void worker.terminate(), STOP_MS);
        await exited;
        clearTimeout(timer);
      })()),
  };
}

function receive(message: InboxThreadMessage, deps: { metrics: StripeMetrics; logger: StripeLogger }): void {
  if (message.kind === "log") {
    deps.logger[message.level](message.obj, message.msg);
    return;
  }
  if (message.kind !== "metrics") return;
  for (const { labels, delta } of message.events) deps.metrics.events.inc(labels, delta);
  deps.metrics.inboxPending.set(message.gauges.pending);
  deps.metrics.inboxDead.set(message.gauges.dead);
  deps.metrics.inboxOldestPendingSeconds.set(message.gauges.oldestPendingSeconds);
}

/**
 * `wake()` sends at once while the thread is idle; while it is busy, it only notes that something
 * arrived, and `idle()` (the thread's report that it found nothing due) sends the wake then.
 */
export function idleAwareWake(send: () => void): { wake(): void; idle(): void } {
  let idle = false;
  let arrived = false;
  return {
    wake: () => {
      if (!idle) {
        arrived = true;
        return;
      }
      idle = false;
      send();
    },
    idle: () => {
      idle = !arrived;
      arrived = false;
      if (!idle) send();
    },
  };
}
