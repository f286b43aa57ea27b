import fc from "fast-check";
import { Registry } from "prom-client";
import { afterEach, describe, expect, test } from "vitest";

import { calculateDelay, DEFAULT_BACKOFF, ExponentialFailureRateLimiter } from "../../src/reconciler/backoff.ts";
import { createControllerMetrics } from "../../src/reconciler/metrics.ts";
import { type Clock, type TimerHandle, WorkQueue, type WorkQueueOptions } from "../../src/reconciler/queue.ts";

/** Deterministic clock: time moves only in `advance`, which fires due timers in time order. */
class FakeClock implements Clock {
  private time = 1_000_000;
  private nextId = 0;
  private readonly timers = new Map<number, { at: number; fn: () => void }>();
  now(): number {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    this.timers.set(++this.nextId, { at: this.time + ms, fn });
    return this.nextId;
  }
  clearTimeout(handle: TimerHandle): void {
    this.timers.delete(handle as number);
  }
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = end;
  }
  pending(): number {
    return this.timers.size;
  }
}

const open: { queue: WorkQueue; clock: FakeClock }[] = [];

function setup(options: Partial<WorkQueueOptions> = {}): { queue: WorkQueue; clock: FakeClock } {
  const clock = new FakeClock();
  const queue = new WorkQueue({ name: "test", clock, random: () => 0.5, ...options });
  open.push({ queue, clock });
  return { queue, clock };
}

/** Takes every ready key (without waiting), marking each done; returns them in order. */
async function drainReady(queue: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (queue.len() > 0) {
    const key = (await queue.get())!;
    keys.push(key);
    queue.done(key);
  }
  return keys;
}

/** Lets pending promise callbacks run. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  // Leak check: a shut-down queue holds no timer, and nothing is left on the fake clock.
  for (const { queue, clock } of open.splice(0)) {
    queue.shutDown();
    expect(queue.pendingTimers()).toBe(0);
    expect(clock.pending()).toBe(0);
  }
});

describe("dedup and the processing lock", () => {
  test("a key added while queued is queued once", async () => {
    const { queue } = setup();
    for (const key of ["a", "b", "a", "a", "b"]) queue.add(key);
    expect(queue.len()).toBe(2);
    expect(await drainReady(queue)).toEqual(["a", "b"]);
  });

  test("a key added while processing is not handed out again until done, then runs once more", async () => {
    const { queue } = setup();
    queue.add("a");
    expect(await queue.get()).toBe("a");
    queue.add("a");
    queue.add("a");
    let second: string | undefined;
    void queue.get().then((key) => (second = key));
    await settle();
    expect(second, "a processing key must not reach a second worker").toBeUndefined();
    expect(queue.len()).toBe(0);
    queue.done("a");
    await settle();
    expect(second, "the dirty key runs again after done").toBe("a");
    queue.done("a");
    expect(queue.len()).toBe(0);
    expect(queue.inFlight()).toBe(0);
  });

  test("done of a key that is not processing is a no-op", async () => {
    const { queue } = setup();
    queue.add("a");
    queue.done("a");
    expect(await drainReady(queue)).toEqual(["a"]);
  });

  test("get aborted by its signal resolves undefined and loses no key", async () => {
    const { queue } = setup();
    const controller = new AbortController();
    const pending = queue.get(controller.signal);
    controller.abort();
    expect(await pending).toBeUndefined();
    queue.add("a");
    expect(await queue.get()).toBe("a");
  });
});

describe("delayed adds", () => {
  test("several delays keep the earliest ready time", async () => {
    const { queue, clock } = setup();
    queue.addAfter("a", 5_000);
    queue.addAfter("a", 1_000);
    queue.addAfter("a", 3_000);
    expect(queue.waitingLen()).toBe(1);
    clock.advance(999);
    expect(queue.len()).toBe(0);
    clock.advance(1);
    expect(await drainReady(queue)).toEqual(["a"]);
    clock.advance(10_000);
    expect(queue.len(), "the later delays were folded into the earliest").toBe(0);
    expect(queue.pendingTimers()).toBe(0);
  });

  test("a plain add makes a waiting key ready now and cancels the wait", async () => {
    const { queue, clock } = setup();
    queue.addAfter("a", 5_000);
    queue.add("a");
    expect(queue.waitingLen()).toBe(0);
    expect(await drainReady(queue)).toEqual(["a"]);
    clock.advance(5_000);
    expect(queue.len()).toBe(0);
  });

  test("a delayed add of a key already queued is a no-op (it is already due)", async () => {
    const { queue, clock } = setup();
    queue.add("a");
    queue.addAfter("a", 1_000);
    expect(queue.waitingLen()).toBe(0);
    expect(await drainReady(queue)).toEqual(["a"]);
    clock.advance(1_000);
    expect(queue.len()).toBe(0);
  });

  test("keys become ready in time order, and zero or negative delays mean now", async () => {
    const { queue, clock } = setup();
    queue.addAfter("late", 3_000);
    queue.addAfter("early", 1_000);
    queue.addAfter("now", 0);
    queue.addAfter("also-now", -5);
    expect(await drainReady(queue)).toEqual(["now", "also-now"]);
    clock.advance(3_000);
    expect(await drainReady(queue)).toEqual(["early", "late"]);
  });

  test("a delay that expires while the key is processing runs it once after done", async () => {
    const { queue, clock } = setup();
    queue.add("a");
    expect(await queue.get()).toBe("a");
    queue.addAfter("a", 1_000);
    clock.advance(1_000);
    expect(queue.len(), "still processing").toBe(0);
    queue.done("a");
    expect(await drainReady(queue)).toEqual(["a"]);
  });
});

describe("rate-limited adds", () => {
  test("backoff doubles from 1 s, resets on forget", async () => {
    const { queue, clock } = setup();
    for (const [attempt, wait] of [1_000, 2_000, 4_000, 8_000].entries()) {
      queue.addRateLimited("a");
      expect(queue.numRequeues("a")).toBe(attempt + 1);
      clock.advance(wait - 1);
      expect(queue.len(), `retry ${attempt} not before ${wait} ms`).toBe(0);
      clock.advance(1);
      expect(await drainReady(queue), `retry ${attempt} at ${wait} ms`).toEqual(["a"]);
    }
    queue.forget("a");
    expect(queue.numRequeues("a")).toBe(0);
    queue.addRateLimited("a");
    clock.advance(1_000);
    expect(await drainReady(queue), "after forget the first retry is 1 s again").toEqual(["a"]);
  });

  const delays: Record<string, { reason: string; attempt: number; random: number; want: number }> = {
    first: { reason: "attempt 0 waits minDelay", attempt: 0, random: 0.5, want: 1_000 },
    third: { reason: "doubles per failure", attempt: 2, random: 0.5, want: 4_000 },
    ninth: { reason: "last step below the cap", attempt: 8, random: 0.5, want: 256_000 },
    capped: { reason: "2^9 s exceeds 5 min, so the cap applies", attempt: 9, random: 0.5, want: 300_000 },
    huge: { reason: "no overflow for absurd attempt counts", attempt: 10_000, random: 0.5, want: 300_000 },
    jitterLow: { reason: "random 0 gives the -50 % edge", attempt: 1, random: 0, want: 1_000 },
    jitterHigh: { reason: "random near 1 approaches +50 %", attempt: 1, random: 0.999, want: 2_998 },
    capLow: { reason: "at the cap jitter still spreads downward", attempt: 20, random: 0, want: 150_000 },
    capHigh: { reason: "jitter never exceeds the cap", attempt: 20, random: 0.999, want: 300_000 },
    negative: { reason: "a negative attempt counts as the first", attempt: -3, random: 0.5, want: 1_000 },
  };
  for (const [name, tc] of Object.entries(delays)) {
    test(`calculateDelay: ${name}`, () => {
      expect(calculateDelay(tc.attempt, DEFAULT_BACKOFF, () => tc.random), tc.reason).toBe(tc.want);
    });
  }

  test("every jittered delay stays within ±50 % of the base and under the cap", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 64 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const base = Math.min(300_000, 1_000 * 2 ** attempt);
        const delay = calculateDelay(attempt, DEFAULT_BACKOFF, () => r);
        return delay >= Math.floor(base * 0.5) && delay <= Math.min(300_000, Math.ceil(base * 1.5));
      }),
    );
  });

  test("limiter options are validated at construction", () => {
    expect(() => new ExponentialFailureRateLimiter({ minDelayMs: 0 })).toThrow(/minDelayMs/);
    expect(() => new ExponentialFailureRateLimiter({ maxDelayMs: 10 })).toThrow(/maxDelayMs/);
    expect(() => new ExponentialFailureRateLimiter({ jitter: 1 })).toThrow(/jitter/);
  });
});

describe("priorities", () => {
  const cases: Record<string, { reason: string; adds: [string, "high" | "low"][]; want: string[] }> = {
    highFirst: {
      reason: "real changes overtake a resync backlog",
      adds: [["r1", "low"], ["r2", "low"], ["c1", "high"]],
      want: ["c1", "r1", "r2"],
    },
    fifoWithinLevel: {
      reason: "first in, first out within one priority",
      adds: [["a", "high"], ["b", "high"], ["x", "low"], ["y", "low"]],
      want: ["a", "b", "x", "y"],
    },
    upgrade: {
      reason: "a low key added again at high moves to the high level",
      adds: [["r1", "low"], ["r2", "low"], ["r2", "high"]],
      want: ["r2", "r1"],
    },
    noDowngrade: {
      reason: "a high key added again at low keeps high (max priority)",
      adds: [["a", "high"], ["b", "low"], ["a", "low"]],
      want: ["a", "b"],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, async () => {
      const { queue } = setup();
      for (const [key, priority] of tc.adds) queue.add(key, { priority });
      expect(await drainReady(queue), tc.reason).toEqual(tc.want);
    });
  }

  test("getItem reports the priority a key was queued at; a delayed add keeps the highest", async () => {
    const { queue, clock } = setup();
    queue.addAfter("a", 1_000, { priority: "low" });
    queue.addAfter("a", 2_000, { priority: "high" });
    clock.advance(1_000);
    expect(await queue.getItem()).toEqual({ key: "a", priority: "high" });
  });
});

describe("shutdown", () => {
  test("shutDown wakes waiting getters, drops queued and waiting keys, ignores adds, clears timers", async () => {
    const { queue } = setup();
    const waiting = queue.get();
    queue.shutDown();
    expect(await waiting).toBeUndefined();
    const other = setup().queue;
    other.add("queued");
    other.addAfter("later", 10_000);
    expect(other.pendingTimers()).toBe(1);
    other.shutDown();
    other.add("ignored");
    other.addRateLimited("ignored");
    expect(other.pendingTimers()).toBe(0);
    expect(other.len()).toBe(0);
    expect(await other.get(), "a stopping controller must not start new work").toBeUndefined();
  });

  test("shutDownWithDrain resolves only after in-flight keys are done", async () => {
    const { queue } = setup();
    queue.add("a");
    queue.add("b");
    expect(await queue.get()).toBe("a");
    let drained = false;
    const drain = queue.shutDownWithDrain().then(() => (drained = true));
    queue.add("a"); // dirty during drain: must not run again
    await settle();
    expect(drained).toBe(false);
    queue.done("a");
    await drain;
    expect(drained).toBe(true);
    expect(await queue.get()).toBeUndefined();
  });
});

describe("metrics", () => {
  test("the queue reports adds, depth per priority, retries and durations to the registry", async () => {
    const registry = new Registry();
    const metrics = createControllerMetrics(registry);
    const { queue, clock } = setup({ name: "instance", metrics: metrics.forQueue("instance") });
    queue.add("a");
    queue.add("a"); // duplicate: not an add
    queue.add("r", { priority: "low" });
    const depth = async (priority: string): Promise<number> =>
      (await metrics.workqueueDepth.get()).values.find((v) => v.labels.priority === priority)?.value ?? NaN;
    expect(await depth("0")).toBe(1);
    expect(await depth("-100")).toBe(1);
    clock.advance(2_000);
    expect(await queue.get()).toBe("a");
    clock.advance(3_000);
    const unfinished = (await metrics.workqueueUnfinishedWork.get()).values[0]?.value;
    expect(unfinished, "scrape-time probe sees 3 s of unfinished work").toBe(3);
    queue.done("a");
    queue.addRateLimited("a");
    queue.addAfter("b", 0); // no delay: not a retry
    expect(await depth("0")).toBe(1);
    const text = await registry.metrics();
    expect(text).toContain('workqueue_adds_total{name="instance",controller="instance"} 3');
    expect(text).toContain('workqueue_retries_total{name="instance",controller="instance"} 1');
    expect(text).toContain('workqueue_queue_duration_seconds_count{name="instance",controller="instance"} 1');
    expect(text).toContain('workqueue_queue_duration_seconds_sum{name="instance",controller="instance"} 2');
    expect(text).toContain('workqueue_work_duration_seconds_sum{name="instance",controller="instance"} 3');
    expect(text).toContain('workqueue_longest_running_processor_seconds{name="instance",controller="instance"} 0');
  });
});

describe("very long delays", () => {
  test("a 30-day addAfter arms one capped timer instead of spinning (Node's setTimeout overflows past 2^31 - 1 ms)", async () => {
    const { MAX_TIMER_MS, systemClock, WorkQueue } = await import("../../src/reconciler/queue.ts");
    let armed = 0;
    const delays: number[] = [];
    const clock = {
      now: () => Date.now(),
      setTimeout: (fn: () => void, ms: number) => {
        armed += 1;
        delays.push(ms);
        return systemClock.setTimeout(fn, ms);
      },
      clearTimeout: (handle: unknown) => systemClock.clearTimeout(handle),
    };
    const queue = new WorkQueue({ name: "long", clock });
    queue.addAfter("retention", 30 * 24 * 3600 * 1000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(armed).toBe(1);
    expect(delays[0]).toBeGreaterThan(MAX_TIMER_MS);
    expect(queue.len()).toBe(0);
    queue.shutDown();
  });
});
