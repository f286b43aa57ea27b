import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";

import { OutcomeUnknownError, TerminalError } from "../../src/errors.ts";
import { ExponentialFailureRateLimiter } from "../../src/reconciler/backoff.ts";
import {
  Controller,
  type ControllerOptions,
  type ReconcileContext,
  type ReconcileFn,
  ReconcileTimeoutError,
  ShutdownError,
} from "../../src/reconciler/controller.ts";
import type { LoggerLike } from "../../src/reconciler/logger.ts";
import { type ControllerMetrics, createControllerMetrics } from "../../src/reconciler/metrics.ts";
import { WorkQueue } from "../../src/reconciler/queue.ts";

interface LogLine {
  level: string;
  bindings: Record<string, unknown>;
  obj: object;
  msg: string | undefined;
}

class RecordingLogger implements LoggerLike {
  constructor(
    readonly lines: LogLine[] = [],
    readonly bindings: Record<string, unknown> = {},
  ) {}
  debug(obj: object, msg?: string): void {
    this.lines.push({ level: "debug", bindings: this.bindings, obj, msg });
  }
  info(obj: object, msg?: string): void {
    this.lines.push({ level: "info", bindings: this.bindings, obj, msg });
  }
  warn(obj: object, msg?: string): void {
    this.lines.push({ level: "warn", bindings: this.bindings, obj, msg });
  }
  error(obj: object, msg?: string): void {
    this.lines.push({ level: "error", bindings: this.bindings, obj, msg });
  }
  child(bindings: Record<string, unknown>): RecordingLogger {
    return new RecordingLogger(this.lines, { ...this.bindings, ...bindings });
  }
}

/** Lets pending promise callbacks and worker loops run (setImmediate is not faked). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (condition()) return;
    await settle();
  }
  throw new Error(`condition never held: ${what}`);
}

interface Harness {
  queue: WorkQueue;
  registry: Registry;
  metrics: ControllerMetrics;
  limiter: ExponentialFailureRateLimiter;
  logger: RecordingLogger;
  stop: AbortController;
  stopped: Promise<void>;
  isStopped: () => boolean;
}

const harnesses: Harness[] = [];

function start(reconcile: ReconcileFn, options: Partial<ControllerOptions> = {}): Harness {
  const registry = new Registry();
  const metrics = createControllerMetrics(registry);
  metrics.initMetrics();
  const limiter = new ExponentialFailureRateLimiter({}, () => 0.5);
  const queue = new WorkQueue({ name: "instance", metrics: metrics.forQueue("instance"), rateLimiter: limiter });
  const logger = new RecordingLogger();
  const controller = new Controller({ name: "instance", reconcile, queue, metrics, logger, ...options });
  const stop = new AbortController();
  let done = false;
  const stopped = controller.start(stop.signal).then(() => void (done = true));
  const harness = { queue, registry, metrics, limiter, logger, stop, stopped, isStopped: () => done };
  harnesses.push(harness);
  return harness;
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = { controller: "instance" }): Promise<number> {
  const found = await registry.getSingleMetric(name)?.get();
  const value = found?.values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want));
  if (!value) throw new Error(`no series ${name} ${JSON.stringify(labels)}`);
  return value.value;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"] });
});

afterEach(async () => {
  // Leak check: every controller stops, and no timer (reconcile deadline, drain, queue delay) is left.
  for (const h of harnesses.splice(0)) {
    h.stop.abort();
    await h.stopped;
    await until(() => h.queue.inFlight() === 0, "in-flight reconciles settle");
    expect(h.queue.pendingTimers()).toBe(0);
  }
  expect(vi.getTimerCount()).toBe(0);
  vi.useRealTimers();
});

describe("concurrency", () => {
  test("16 workers never reconcile one key twice at once, and every add is seen by a later run", async () => {
    const active = new Map<string, number>();
    let maxPerKey = 0;
    let running = 0;
    let maxRunning = 0;
    let seq = 0;
    const lastAdd = new Map<string, number>();
    const lastSeen = new Map<string, number>();
    const h = start(async (key) => {
      const n = (active.get(key) ?? 0) + 1;
      active.set(key, n);
      maxPerKey = Math.max(maxPerKey, n);
      maxRunning = Math.max(maxRunning, ++running);
      lastSeen.set(key, seq);
      for (let i = 0; i < 3; i++) await settle();
      active.set(key, n - 1);
      running--;
    });
    for (let round = 0; round < 100; round++) {
      for (let j = 0; j < 5; j++) {
        const key = `k${(round * 3 + j) % 6}`;
        lastAdd.set(key, ++seq);
        h.queue.add(key);
      }
      await settle();
    }
    await until(() => h.queue.len() === 0 && h.queue.inFlight() === 0, "queue idle");
    expect(maxPerKey, "one key on two workers").toBe(1);
    expect(maxRunning, "different keys do run in parallel").toBeGreaterThan(1);
    for (const [key, added] of lastAdd) expect(lastSeen.get(key)!, `${key}: the last add was reconciled`).toBeGreaterThanOrEqual(added);
    expect(await metric(h.registry, "controller_runtime_max_concurrent_reconciles")).toBe(16);
    expect(await metric(h.registry, "controller_runtime_active_workers")).toBe(0);
  });
});

describe("outcomes", () => {
  type Want = { result: string; errors: number; terminal: number; panics: number; requeues: number; waiting: number };
  const cases: Record<string, { reason: string; reconcile: ReconcileFn; want: Want }> = {
    success: {
      reason: "a converged run forgets the backoff and is not requeued",
      reconcile: async () => undefined,
      want: { result: "success", errors: 0, terminal: 0, panics: 0, requeues: 0, waiting: 0 },
    },
    requeueAfter: {
      reason: "requeueAfter forgets the backoff and schedules the next run",
      reconcile: async () => ({ requeueAfterMs: 60_000 }),
      want: { result: "requeue_after", errors: 0, terminal: 0, panics: 0, requeues: 0, waiting: 1 },
    },
    zeroRequeueAfter: {
      reason: "requeueAfterMs 0 means converged, as in controller-runtime",
      reconcile: async () => ({ requeueAfterMs: 0 }),
      want: { result: "success", errors: 0, terminal: 0, panics: 0, requeues: 0, waiting: 0 },
    },
    terminal: {
      reason: "a TerminalError is counted and never retried",
      reconcile: async () => {
        throw new TerminalError("InvalidTemplate", "bad template");
      },
      want: { result: "error", errors: 1, terminal: 1, panics: 0, requeues: 0, waiting: 0 },
    },
    wrappedTerminal: {
      reason: "a TerminalError in the cause chain is terminal too",
      reconcile: async () => {
        throw new Error("plan failed", { cause: new TerminalError("InvalidTemplate", "bad template") });
      },
      want: { result: "error", errors: 1, terminal: 1, panics: 0, requeues: 0, waiting: 0 },
    },
    error: {
      reason: "any other error retries with backoff (third failure)",
      reconcile: async () => {
        throw new Error("ssh: connection refused");
      },
      want: { result: "error", errors: 1, terminal: 0, panics: 0, requeues: 3, waiting: 1 },
    },
    outcomeUnknown: {
      reason: "an unknown outcome retries (the next run observes first)",
      reconcile: async () => {
        throw new OutcomeUnknownError("connection dropped");
      },
      want: { result: "error", errors: 1, terminal: 0, panics: 0, requeues: 3, waiting: 1 },
    },
    nonErrorThrown: {
      reason: "throwing a non-Error is a bug: counted as a panic, retried",
      reconcile: async () => {
        throw "oops"; // the case under test: a non-Error value
      },
      want: { result: "error", errors: 1, terminal: 0, panics: 1, requeues: 3, waiting: 1 },
    },
    invalidResult: {
      reason: "a negative requeueAfterMs breaks the contract: panic, retried",
      reconcile: async () => ({ requeueAfterMs: -5 }),
      want: { result: "error", errors: 1, terminal: 0, panics: 1, requeues: 3, waiting: 1 },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, async () => {
      let runs = 0;
      const h = start(async (key, ctx) => {
        runs++;
        return tc.reconcile(key, ctx);
      });
      h.limiter.when("sub");
      h.limiter.when("sub"); // two earlier failures, so "forget" is observable
      h.queue.add("sub");
      await until(() => runs === 1 && h.queue.inFlight() === 0, "one run");
      const got = {
        result: (await metric(h.registry, "controller_runtime_reconcile_total", { result: tc.want.result })) === 1 ? tc.want.result : "other",
        errors: await metric(h.registry, "controller_runtime_reconcile_errors_total"),
        terminal: await metric(h.registry, "controller_runtime_terminal_reconcile_errors_total"),
        panics: await metric(h.registry, "controller_runtime_reconcile_panics_total"),
        requeues: h.queue.numRequeues("sub"),
        waiting: h.queue.waitingLen(),
      };
      expect(got, tc.reason).toEqual(tc.want);
    });
  }

  test("requeueAfter is honoured: the next run comes when the delay has passed, not before", async () => {
    let runs = 0;
    const h = start(async () => (++runs === 1 ? { requeueAfterMs: 30_000 } : undefined));
    h.queue.add("sub");
    await until(() => runs === 1 && h.queue.inFlight() === 0, "first run");
    await vi.advanceTimersByTimeAsync(29_999);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => runs === 2, "second run at 30 s");
  });

  test("an error retries after 1 s, and success afterwards resets the backoff", async () => {
    let runs = 0;
    const h = start(async () => {
      if (++runs === 1) throw new Error("transient");
    });
    h.queue.add("sub");
    await until(() => runs === 1 && h.queue.inFlight() === 0, "failed run");
    await vi.advanceTimersByTimeAsync(999);
    expect(runs).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => runs === 2 && h.queue.inFlight() === 0, "retry");
    expect(h.queue.numRequeues("sub")).toBe(0);
  });

  test("the reconcile timeout aborts the signal, is counted, and retries rate-limited", async () => {
    let seen: AbortSignal | undefined;
    const h = start(
      (_key, { signal }) => {
        seen = signal;
        return new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason as Error)));
      },
      { reconcileTimeoutMs: 5_000 },
    );
    h.queue.add("sub");
    await until(() => seen !== undefined, "reconcile started");
    await vi.advanceTimersByTimeAsync(4_999);
    expect(seen!.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await until(() => h.queue.inFlight() === 0, "timed-out run ends");
    expect(seen!.reason).toBeInstanceOf(ReconcileTimeoutError);
    expect(await metric(h.registry, "controller_runtime_reconcile_timeouts_total")).toBe(1);
    expect(await metric(h.registry, "controller_runtime_reconcile_total", { result: "error" })).toBe(1);
    expect(h.queue.numRequeues("sub")).toBe(1);
    expect(h.queue.waitingLen()).toBe(1);
  });
});

describe("shutdown", () => {
  test("stop waits for the in-flight reconcile, then resolves without starting queued keys", async () => {
    const started: string[] = [];
    let release!: () => void;
    const h = start(
      async (key) => {
        started.push(key);
        await new Promise<void>((resolve) => (release = resolve));
      },
      { maxConcurrentReconciles: 1 },
    );
    h.queue.add("a");
    h.queue.add("b");
    await until(() => started.length === 1, "a started");
    h.stop.abort();
    for (let i = 0; i < 20; i++) await settle();
    expect(h.isStopped(), "must wait for the in-flight reconcile").toBe(false);
    release();
    await h.stopped;
    expect(started).toEqual(["a"]);
    expect(await metric(h.registry, "controller_runtime_reconcile_total", { result: "success" })).toBe(1);
    expect(h.queue.isShuttingDown()).toBe(true);
  });

  test("after drainTimeoutMs the in-flight signals are aborted and start resolves", async () => {
    let seen: AbortSignal | undefined;
    const h = start(
      (_key, { signal }) => {
        seen = signal;
        return new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason as Error)));
      },
      { drainTimeoutMs: 10_000 },
    );
    h.queue.add("sub");
    await until(() => seen !== undefined, "reconcile started");
    h.stop.abort();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(h.isStopped()).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await h.stopped;
    expect(seen!.reason).toBeInstanceOf(ShutdownError);
    expect(h.logger.lines.some((l) => l.level === "warn" && l.msg?.includes("drain timeout"))).toBe(true);
  });

  test("a signal aborted before start stops at once", async () => {
    const h = start(async () => undefined);
    h.stop.abort();
    await h.stopped;
    expect(h.queue.isShuttingDown()).toBe(true);
  });
});

describe("logging and wiring", () => {
  test("every run has its own reconcileId, bound with the key in the context logger", async () => {
    const contexts: ReconcileContext[] = [];
    let runs = 0;
    const h = start(async (_key, ctx) => {
      contexts.push(ctx);
      if (++runs === 1) throw new Error("first fails");
    });
    h.queue.add("sub-1");
    await until(() => runs === 1 && h.queue.inFlight() === 0, "first run");
    await vi.advanceTimersByTimeAsync(1_000);
    await until(() => runs === 2 && h.queue.inFlight() === 0, "second run");
    const [first, second] = contexts.map((c) => (c.logger as RecordingLogger).bindings);
    expect(first).toMatchObject({ controller: "instance", subscription: "sub-1", reconcileId: contexts[0]!.reconcileId });
    expect(contexts[0]!.reconcileId).toMatch(/^[0-9a-f-]{36}$/);
    expect(second!.reconcileId).not.toBe(first!.reconcileId);
    const failure = h.logger.lines.find((l) => l.level === "error");
    expect(failure?.bindings.reconcileId).toBe(contexts[0]!.reconcileId);
    expect(failure?.obj).toMatchObject({ requeues: 1 });
    const text = await h.registry.getSingleMetricAsString("controller_runtime_reconcile_time_seconds");
    expect(text).toContain('controller_runtime_reconcile_time_seconds_count{controller="instance"} 2');
  });

  test("the reconcile sees the priority its key was queued at: low only when nothing but a resync asked", async () => {
    const seen: Array<[string, string]> = [];
    let release!: () => void;
    const busy = new Promise<void>((resolve) => (release = resolve));
    const h = start(
      async (key, ctx) => {
        seen.push([key, ctx.priority]);
        if (key === "busy") await busy;
      },
      { maxConcurrentReconciles: 1 },
    );
    h.queue.add("busy");
    await until(() => seen.length === 1, "the one worker is busy");
    h.queue.add("resync-only", { priority: "low" });
    h.queue.add("changed", { priority: "low" });
    h.queue.add("changed"); // a notification for a key the resync queued: upgraded
    h.queue.add("notified");
    release();
    await until(() => seen.length === 4 && h.queue.inFlight() === 0, "four runs");
    expect(seen.slice(1).sort()).toEqual([["changed", "high"], ["notified", "high"], ["resync-only", "low"]]);
  });

  test("options are validated at construction and a controller starts once", async () => {
    const registry = new Registry();
    const metrics = createControllerMetrics(registry);
    const queue = new WorkQueue({ name: "instance" });
    const base = { name: "instance", reconcile: async () => undefined, queue, metrics, logger: new RecordingLogger() };
    expect(() => new Controller({ ...base, maxConcurrentReconciles: 0 })).toThrow(/maxConcurrentReconciles/);
    expect(() => new Controller({ ...base, reconcileTimeoutMs: 0 })).toThrow(/reconcileTimeoutMs/);
    const controller = new Controller(base);
    const stop = new AbortController();
    stop.abort();
    await controller.start(stop.signal);
    await expect(controller.start(stop.signal)).rejects.toThrow(/already started/);
  });

  test("a pino logger satisfies LoggerLike", () => {
    const logger: LoggerLike = pino({ enabled: false });
    expect(typeof logger.child({ a: 1 }).info).toBe("function");
  });
});
