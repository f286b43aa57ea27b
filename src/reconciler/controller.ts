import { randomUUID } from "node:crypto";

import { coerceError, TerminalError } from "../errors.ts";
import { DeferredChildLogger, type LoggerLike } from "./logger.ts";
import type { ControllerMetrics, ReconcileResultLabel } from "./metrics.ts";
import { type Clock, type Priority, systemClock, type WorkItem, type WorkQueue } from "./queue.ts";

/**
 * The worker loop (controller-runtime's processNextWorkItem/reconcileHandler). It knows nothing of
 * databases or hosts: the reconcile function is injected. It owns the outcome of each run:
 * success forgets the key's backoff, `requeueAfterMs` forgets it and schedules the next run, a
 * TerminalError stops retrying, anything else retries with per-key backoff.
 */

/** void or `{}`: converged. `{ requeueAfterMs }`: run again after that delay (a poll or a timer). */
export type ReconcileResult = { requeueAfterMs?: number } | void;

export interface ReconcileContext {
  /** Aborted on the per-reconcile timeout and when shutdown gives up draining. Pass it to all I/O. */
  readonly signal: AbortSignal;
  readonly reconcileId: string;
  /** The priority the key was queued at: "low" only when no change asked for it (a resync). */
  readonly priority: Priority;
  /** Bound with `subscription` and `reconcileId`. */
  readonly logger: LoggerLike;
}

/**
 * Reconciles one key, level-triggered and idempotent (STYLE rule 1). Throw TerminalError for
 * "do not retry", anything else for "retry with backoff". It must honour `signal`: the key stays
 * locked (never run twice concurrently) until the returned promise settles.
 */
export type ReconcileFn = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult>;

export interface ControllerOptions {
  /** The `controller` metric label and log binding, e.g. "instance". */
  readonly name: string;
  readonly reconcile: ReconcileFn;
  readonly queue: WorkQueue;
  readonly metrics: ControllerMetrics;
  readonly logger: LoggerLike;
  /** Workers, i.e. keys reconciled at once. Default 16; the daemon passes MAX_CONCURRENT_RECONCILES (default 64). */
  readonly maxConcurrentReconciles?: number;
  /** Per-reconcile deadline; on expiry the signal aborts and the key is retried. Default 120 s. */
  readonly reconcileTimeoutMs?: number;
  /** How long shutdown waits for in-flight reconciles before aborting them. Default 30 s. */
  readonly drainTimeoutMs?: number;
  readonly clock?: Clock;
}

export const CONTROLLER_DEFAULTS = {
  maxConcurrentReconciles: 16,
  reconcileTimeoutMs: 120_000,
  drainTimeoutMs: 30_000,
} as const;

/** The reason a reconcile's signal is aborted when its deadline passes. */
export class ReconcileTimeoutError extends Error {
  override readonly name = "ReconcileTimeoutError";
  constructor(readonly timeoutMs: number) {
    super(`reconcile timed out after ${timeoutMs} ms`);
  }
}

/** The reason in-flight signals are aborted when shutdown stops waiting for them. */
export class ShutdownError extends Error {
  override readonly name = "ShutdownError";
}

/** What one run ended with; `handleOutcome` switches over it. */
type Outcome =
  | { readonly kind: "success" }
  | { readonly kind: "requeueAfter"; readonly ms: number }
  | { readonly kind: "terminal"; readonly error: Error; readonly reason: string }
  | { readonly kind: "error"; readonly error: Error }
  /** The reconcile broke its contract (threw a non-Error, returned a malformed result): a bug. */
  | { readonly kind: "panic"; readonly error: Error };

/**
 * Runs `maxConcurrentReconciles` workers over the queue until stopped.
 *
 * Modes: new → running (`start`) → draining (signal aborted: the queue stops handing out keys,
 * in-flight reconciles may finish) → stopped (`start` resolves: all in-flight runs settled, or
 * `drainTimeoutMs` passed and their signals were aborted). A controller starts once.
 */
export class Controller {
  private readonly options: Required<Omit<ControllerOptions, "clock">> & { clock: Clock };
  private readonly inFlight = new Set<AbortController>();
  private started = false;

  constructor(options: ControllerOptions) {
    if (!options.name) throw new TypeError("Controller: name is required");
    const merged = { ...CONTROLLER_DEFAULTS, clock: systemClock, ...stripUndefined(options) };
    if (!Number.isInteger(merged.maxConcurrentReconciles) || merged.maxConcurrentReconciles < 1) {
      throw new RangeError("Controller: maxConcurrentReconciles must be an integer >= 1");
    }
    if (!(merged.reconcileTimeoutMs > 0)) throw new RangeError("Controller: reconcileTimeoutMs must be > 0");
    if (!(merged.drainTimeoutMs >= 0)) throw new RangeError("Controller: drainTimeoutMs must be >= 0");
    this.options = merged;
  }

  /** Blocks until `signal` aborts (or the queue is shut down), then drains; see the class doc. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.started) throw new Error("Controller: already started");
    this.started = true;
    const { name, queue, metrics, logger, maxConcurrentReconciles: n } = this.options;
    metrics.initController(name, n);
    logger.info({ controller: name, workers: n }, "controller started");
    const workers = Promise.all(Array.from({ length: n }, () => this.worker()));
    await Promise.race([aborted(signal), workers]);
    logger.info({ controller: name, inFlight: this.inFlight.size }, "controller stopping");
    const drained = await this.withDeadline(queue.shutDownWithDrain(), this.options.drainTimeoutMs);
    if (!drained) {
      logger.warn({ controller: name, abandoned: this.inFlight.size }, "drain timeout: aborting in-flight reconciles");
      for (const run of this.inFlight) run.abort(new ShutdownError("controller stopped before the reconcile finished"));
      return;
    }
    await workers;
    logger.info({ controller: name }, "controller stopped");
  }

  private async worker(): Promise<void> {
    for (;;) {
      const item = await this.options.queue.getItem();
      if (!item) return;
      try {
        await this.processItem(item);
      } finally {
        this.options.queue.done(item.key);
      }
    }
  }

  /** One run of one key. Never throws: every ending becomes an Outcome. */
  private async processItem(item: WorkItem): Promise<void> {
    const { name, metrics, clock, reconcileTimeoutMs } = this.options;
    const reconcileId = randomUUID();
    const logger = new DeferredChildLogger(this.options.logger, { controller: name, subscription: item.key, reconcileId });
    const run = new AbortController();
    const timer = clock.setTimeout(() => run.abort(new ReconcileTimeoutError(reconcileTimeoutMs)), reconcileTimeoutMs);
    this.inFlight.add(run);
    metrics.activeWorkers.inc({ controller: name });
    const startedAt = clock.now();
    let outcome: Outcome;
    try {
      outcome = toOutcome(await this.options.reconcile(item.key, { signal: run.signal, reconcileId, priority: item.priority, logger }));
    } catch (thrown) {
      outcome = errorOutcome(thrown);
    } finally {
      clock.clearTimeout(timer);
      this.inFlight.delete(run);
      metrics.activeWorkers.dec({ controller: name });
      metrics.reconcileTime.observe({ controller: name }, Math.max(0, clock.now() - startedAt) / 1000);
    }
    if (run.signal.reason instanceof ReconcileTimeoutError) metrics.reconcileTimeouts.inc({ controller: name });
    this.handleOutcome(item, outcome, logger);
  }

  /** The queue action and metrics of each outcome (reconcilers.md section 4). */
  private handleOutcome(item: WorkItem, outcome: Outcome, logger: LoggerLike): void {
    const { queue, metrics, name: controller } = this.options;
    const count = (result: ReconcileResultLabel): void => metrics.reconcileTotal.inc({ controller, result });
    switch (outcome.kind) {
      case "success":
        queue.forget(item.key);
        count("success");
        logger.debug({}, "reconciled");
        return;
      case "requeueAfter":
        queue.forget(item.key);
        queue.addAfter(item.key, outcome.ms, { priority: item.priority });
        count("requeue_after");
        logger.debug({ requeueAfterMs: outcome.ms }, "reconciled; requeued after delay");
        return;
      case "terminal":
        queue.forget(item.key);
        count("error");
        metrics.reconcileErrors.inc({ controller });
        metrics.terminalReconcileErrors.inc({ controller });
        logger.error({ err: outcome.error, reason: outcome.reason }, "reconcile failed terminally; not retrying");
        return;
      case "panic":
      case "error": {
        queue.addRateLimited(item.key, { priority: item.priority });
        count("error");
        metrics.reconcileErrors.inc({ controller });
        if (outcome.kind === "panic") metrics.reconcilePanics.inc({ controller });
        const requeues = queue.numRequeues(item.key);
        logger.error({ err: outcome.error, requeues }, outcome.kind === "panic" ? "reconcile broke its contract; retrying" : "reconcile failed; retrying");
        return;
      }
    }
  }

  /** Resolves true when `promise` settles first, false when `ms` pass first. Clears its timer. */
  private async withDeadline(promise: Promise<void>, ms: number): Promise<boolean> {
    const { clock } = this.options;
    let timer: unknown;
    const deadline = new Promise<false>((resolve) => {
      timer = clock.setTimeout(() => resolve(false), ms);
    });
    try {
      return await Promise.race([promise.then(() => true as const), deadline]);
    } finally {
      clock.clearTimeout(timer);
    }
  }
}

/** Validates what a reconcile returned: a malformed result is a bug, not a poll. */
function toOutcome(result: unknown): Outcome {
  if (result === undefined || result === null) return { kind: "success" };
  if (typeof result !== "object") return panic(`reconcile returned ${typeof result}`);
  const ms: unknown = (result as { requeueAfterMs?: unknown }).requeueAfterMs;
  if (ms === undefined || ms === 0) return { kind: "success" };
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return panic("reconcile returned an invalid requeueAfterMs");
  return { kind: "requeueAfter", ms };
}

/** TerminalError anywhere in the cause chain stops retries (like Go's errors.Is). */
function errorOutcome(thrown: unknown): Outcome {
  if (!(thrown instanceof Error)) return { kind: "panic", error: coerceError(thrown) };
  for (let e: unknown = thrown, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof TerminalError) return { kind: "terminal", error: thrown, reason: e.reason };
  }
  return { kind: "error", error: thrown };
}

function panic(message: string): Outcome {
  return { kind: "panic", error: new Error(message) };
}

function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

/** exactOptionalPropertyTypes: an explicit `undefined` option must not override a default. */
function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
