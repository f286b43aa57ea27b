import { type BackoffOptions, ExponentialFailureRateLimiter, type RateLimiter } from "./backoff.ts";

/** Real changes (webhook, SQL notify, user) run before periodic resyncs. */
export type Priority = "high" | "low";
export const PRIORITIES: readonly Priority[] = ["high", "low"];
const RANK: Readonly<Record<Priority, number>> = { high: 1, low: 0 };
const maxPriority = (a: Priority, b: Priority): Priority => (RANK[a] >= RANK[b] ? a : b);

/** Opaque timer handle of a `Clock`. */
export type TimerHandle = unknown;

/** Time source of the queue and the controller; injectable so tests are deterministic. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Schedules `fn`; the timer must not keep the process alive on its own. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/**
 * Node's setTimeout fires after 1 ms for delays above 2^31 - 1 ms (~24.8 days), and a 30-day
 * retention timer would then spin: a longer wait is capped, and the queue re-arms for the rest
 * when the capped timer fires early.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Reads the globals at call time (so vitest fake timers apply) and unrefs every timer. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, Math.min(ms, MAX_TIMER_MS)).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/** What the queue reports; metrics.ts binds the `name`/`controller` labels. */
export interface WorkQueueMetricsSink {
  /** Ready keys per priority changed by `delta` (workqueue_depth). */
  depth(priority: Priority, delta: number): void;
  /** A key became queued (workqueue_adds_total); duplicate adds are not counted. */
  added(): void;
  /** An add with a non-zero delay (workqueue_retries_total). */
  retried(): void;
  /** Seconds a key waited between being queued and handed to a worker. */
  queued(seconds: number): void;
  /** Seconds between `get` and `done`. */
  worked(seconds: number): void;
  /** Registers a probe read at scrape time; returns its unregister function. */
  inFlight(probe: () => InFlightStats): () => void;
}

export interface InFlightStats {
  /** Sum over keys being processed of how long each has been processed. */
  readonly unfinishedSeconds: number;
  /** The longest of those. */
  readonly longestSeconds: number;
}

export interface WorkItem {
  readonly key: string;
  readonly priority: Priority;
}

export interface AddOptions {
  /** Default "high". A key queued at "low" is upgraded when added again at "high". */
  readonly priority?: Priority;
}

export interface WorkQueueOptions {
  /** The `name` label of the workqueue metrics. */
  readonly name: string;
  readonly clock?: Clock;
  /** Source of jitter for the default rate limiter. */
  readonly random?: () => number;
  /** Overrides the default limiter (1 s doubling to 5 min, ±50 % jitter). */
  readonly rateLimiter?: RateLimiter;
  /** Tunes the default limiter; ignored when `rateLimiter` is given. */
  readonly backoff?: Partial<BackoffOptions>;
  readonly metrics?: WorkQueueMetricsSink;
}

interface Getter {
  readonly resolve: (item: WorkItem | undefined) => void;
}

/** Binary min-heap of (readyAt, key) with lazy deletion: stale entries are skipped on pop. */
class DelayHeap {
  private readonly items: { readyAt: number; key: string }[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): { readyAt: number; key: string } | undefined {
    return this.items[0];
  }
  push(entry: { readyAt: number; key: string }): void {
    const a = this.items;
    a.push(entry);
    for (let i = a.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (a[parent]!.readyAt <= a[i]!.readyAt) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  pop(): void {
    const a = this.items;
    const last = a.pop();
    if (last === undefined || a.length === 0) return;
    a[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let min = i;
      if (l < a.length && a[l]!.readyAt < a[min]!.readyAt) min = l;
      if (r < a.length && a[r]!.readyAt < a[min]!.readyAt) min = r;
      if (min === i) return;
      [a[min], a[i]] = [a[i]!, a[min]!];
      i = min;
    }
  }
  clear(): void {
    this.items.length = 0;
  }
}

/**
 * A rate-limited, delaying, two-level priority work queue of string keys with client-go's
 * guarantees: deduplicated, a key is never handed to two workers at once, and a key added while
 * being processed runs exactly once more after `done`.
 *
 * States of one key (a key is in at most one of queued/processing, and may also be waiting):
 *   absent     --add-->              queued      (in `ready[priority]` and `dirty`)
 *   queued     --add-->              queued      (no-op; a "high" add upgrades a "low" key)
 *   queued     --get-->              processing  (moved out of `dirty` into `processing`)
 *   processing --add-->              processing+dirty (remembered, not handed out)
 *   processing --done-->             absent, or queued again if it was dirty
 *   any        --addAfter(ms>0)-->   + waiting   (`waiting` map + heap; keeps the EARLIEST time
 *                                                 and the highest priority; no-op when queued)
 *   waiting    --timer fires-->      add        (a plain add cancels the wait: ready now)
 * Shutdown: `shutDown` ignores further adds, drops queued and waiting keys (level-triggered: the
 * next resync rebuilds them), clears the timer and resolves every pending `get` with undefined.
 * Unlike client-go, `get` then returns undefined at once even if keys were queued, because a
 * stopping controller (SIGTERM or lost lease) must not start new work. `shutDownWithDrain`
 * additionally resolves when the last processing key is `done`.
 * Timers: at most one (for the earliest waiting key), unref'd; `pendingTimers()` counts it.
 */
export class WorkQueue {
  readonly name: string;
  private readonly clock: Clock;
  private readonly limiter: RateLimiter;
  private readonly metrics: WorkQueueMetricsSink | undefined;
  private readonly ready: Record<Priority, Set<string>> = { high: new Set(), low: new Set() };
  /** Keys that need processing (queued, or processing and added again), with queue time. */
  private readonly dirty = new Map<string, { priority: Priority; since: number }>();
  /** Keys handed to a worker and not yet done, with the time they were handed out. */
  private readonly processing = new Map<string, number>();
  private readonly waiting = new Map<string, { readyAt: number; priority: Priority }>();
  private readonly heap = new DelayHeap();
  private timer: { handle: TimerHandle; at: number } | undefined;
  private readonly getters: Getter[] = [];
  private readonly drainWaiters: (() => void)[] = [];
  private shuttingDown = false;
  private unregisterProbe: (() => void) | undefined;

  constructor(options: WorkQueueOptions) {
    if (!options.name) throw new TypeError("WorkQueue: name is required (it labels the metrics)");
    this.name = options.name;
    this.clock = options.clock ?? systemClock;
    this.limiter = options.rateLimiter ?? new ExponentialFailureRateLimiter(options.backoff, options.random);
    this.metrics = options.metrics;
    this.unregisterProbe = this.metrics?.inFlight(() => this.inFlightStats());
  }

  /** Queues `key` now. No-op while shutting down or when already queued (priority may rise). */
  add(key: string, options: AddOptions = {}): void {
    if (this.shuttingDown) return;
    let priority = options.priority ?? "high";
    const wait = this.waiting.get(key);
    if (wait) {
      priority = maxPriority(priority, wait.priority);
      this.waiting.delete(key); // its heap entry is now stale and skipped
    }
    const entry = this.dirty.get(key);
    if (entry) return this.raise(key, entry, priority);
    this.metrics?.added();
    this.dirty.set(key, { priority, since: this.clock.now() });
    if (!this.processing.has(key)) this.push(key, priority);
  }

  /** Queues `key` after `ms` (at once when `ms <= 0`); of several pending delays the earliest wins. */
  addAfter(key: string, ms: number, options: AddOptions = {}): void {
    if (this.shuttingDown) return;
    if (!(ms > 0)) return this.add(key, options);
    this.metrics?.retried();
    const priority = options.priority ?? "high";
    const entry = this.dirty.get(key);
    if (entry) return this.raise(key, entry, priority); // already due: now is earlier than later
    const readyAt = this.clock.now() + ms;
    const wait = this.waiting.get(key);
    if (wait && wait.readyAt <= readyAt) {
      wait.priority = maxPriority(wait.priority, priority);
      return;
    }
    this.waiting.set(key, { readyAt, priority: wait ? maxPriority(wait.priority, priority) : priority });
    this.heap.push({ readyAt, key });
    this.armTimer();
  }

  /** Queues `key` after its next backoff delay (one more failure). */
  addRateLimited(key: string, options: AddOptions = {}): void {
    if (this.shuttingDown) return;
    this.addAfter(key, this.limiter.when(key), options);
  }

  /** Resets the backoff of `key` (call on success). Does not dequeue it. */
  forget(key: string): void {
    this.limiter.forget(key);
  }

  numRequeues(key: string): number {
    return this.limiter.numRequeues(key);
  }

  /** The next key, waiting for one; undefined once shut down or when `signal` aborts. */
  async get(signal?: AbortSignal): Promise<string | undefined> {
    return (await this.getItem(signal))?.key;
  }

  /** Like `get`, with the priority the key was queued at (to requeue it at the same level). */
  getItem(signal?: AbortSignal): Promise<WorkItem | undefined> {
    if (this.shuttingDown || signal?.aborted) return Promise.resolve(undefined);
    const item = this.pop();
    if (item) return Promise.resolve(item);
    return new Promise((resolve) => {
      const onAbort = (): void => {
        const i = this.getters.indexOf(getter);
        if (i >= 0) this.getters.splice(i, 1);
        resolve(undefined);
      };
      const getter: Getter = {
        resolve: (value) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(value);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.getters.push(getter);
    });
  }

  /** Ends processing of `key`; if it was added meanwhile, it is queued again. Idempotent. */
  done(key: string): void {
    const startedAt = this.processing.get(key);
    if (startedAt === undefined) return;
    this.processing.delete(key);
    this.metrics?.worked(this.secondsSince(startedAt));
    const entry = this.dirty.get(key);
    if (entry && !this.shuttingDown) this.push(key, entry.priority);
    if (this.processing.size === 0 && this.shuttingDown) this.drained();
  }

  /** Stops the queue: see the state block above. Idempotent. */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.clearTimer();
    this.waiting.clear();
    this.heap.clear();
    for (const priority of PRIORITIES) {
      const keys = this.ready[priority];
      if (keys.size > 0) this.metrics?.depth(priority, -keys.size);
      keys.clear();
    }
    this.dirty.clear();
    for (const getter of this.getters.splice(0)) getter.resolve(undefined);
    if (this.processing.size === 0) this.drained();
  }

  /** `shutDown`, then resolves once every key handed out has been `done`. */
  shutDownWithDrain(): Promise<void> {
    const drained = new Promise<void>((resolve) => {
      if (this.shuttingDown && this.processing.size === 0) resolve();
      else this.drainWaiters.push(resolve);
    });
    this.shutDown();
    return drained;
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Keys ready to be handed out (client-go's Len; excludes waiting and processing keys). */
  len(): number {
    return this.ready.high.size + this.ready.low.size;
  }

  /** Keys handed out and not yet done. */
  inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delay to pass. */
  waitingLen(): number {
    return this.waiting.size;
  }

  /** Timers this queue holds (0 or 1); 0 after shutdown. For leak checks. */
  pendingTimers(): number {
    return this.timer ? 1 : 0;
  }

  private push(key: string, priority: Priority): void {
    this.ready[priority].add(key);
    this.metrics?.depth(priority, 1);
    while (this.getters.length > 0) {
      const item = this.pop();
      if (!item) return;
      this.getters.shift()!.resolve(item);
    }
  }

  private pop(): WorkItem | undefined {
    const priority = this.ready.high.size > 0 ? "high" : "low";
    const first = this.ready[priority].values().next();
    if (first.done) return undefined;
    const key = first.value;
    this.ready[priority].delete(key);
    this.metrics?.depth(priority, -1);
    const entry = this.dirty.get(key);
    this.dirty.delete(key);
    const now = this.clock.now();
    this.processing.set(key, now);
    if (entry) this.metrics?.queued(Math.max(0, now - entry.since) / 1000);
    return { key, priority };
  }

  /** Keeps the max priority of a key that is already due; a queued low key moves to the high FIFO. */
  private raise(key: string, entry: { priority: Priority }, priority: Priority): void {
    if (RANK[priority] <= RANK[entry.priority]) return;
    const wasQueued = this.ready[entry.priority].delete(key);
    if (wasQueued) this.metrics?.depth(entry.priority, -1);
    entry.priority = priority;
    if (wasQueued) this.push(key, priority);
  }

  /** (Re)arms the single timer for the earliest live waiting key, dropping stale heap entries. */
  private armTimer(): void {
    let head = this.heap.peek();
    while (head && this.waiting.get(head.key)?.readyAt !== head.readyAt) {
      this.heap.pop();
      head = this.heap.peek();
    }
    if (!head) return this.clearTimer();
    if (this.timer?.at === head.readyAt) return;
    this.clearTimer();
    const delay = Math.max(0, head.readyAt - this.clock.now());
    this.timer = { handle: this.clock.setTimeout(() => this.onTimer(), delay), at: head.readyAt };
  }

  private onTimer(): void {
    this.timer = undefined;
    const now = this.clock.now();
    for (let head = this.heap.peek(); head && head.readyAt <= now; head = this.heap.peek()) {
      this.heap.pop();
      const wait = this.waiting.get(head.key);
      if (wait?.readyAt === head.readyAt) this.add(head.key, { priority: wait.priority });
    }
    this.armTimer();
  }

  private clearTimer(): void {
    if (this.timer) this.clock.clearTimeout(this.timer.handle);
    this.timer = undefined;
  }

  private drained(): void {
    this.unregisterProbe?.();
    this.unregisterProbe = undefined;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private inFlightStats(): InFlightStats {
    let unfinishedSeconds = 0;
    let longestSeconds = 0;
    for (const startedAt of this.processing.values()) {
      const seconds = this.secondsSince(startedAt);
      unfinishedSeconds += seconds;
      longestSeconds = Math.max(longestSeconds, seconds);
    }
    return { unfinishedSeconds, longestSeconds };
  }

  private secondsSince(start: number): number {
    return Math.max(0, this.clock.now() - start) / 1000;
  }
}
