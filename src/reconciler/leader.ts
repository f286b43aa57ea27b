import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";

import { Gauge, type Registry } from "prom-client";

import { coerceError } from "../errors.ts";
import { pause } from "../pause.ts";
import type { LoggerLike } from "./logger.ts";
import type { LeaseState, LeaseStore } from "./types.ts";

/**
 * Leader election over a lease row (reconcilers.md sections 5 and 9), client-go's LeaderElector
 * reduced to what one daemon needs. Exactly one replica leads; a leader that cannot prove its lease
 * within the renew deadline stops acting at once by aborting the signal of its term.
 *
 * Modes and transitions
 *   idle ──start(signal)──► follower: tries to acquire every retry period (+ up to 20% jitter)
 *   follower ──acquired (epoch N)──► leader(term N): onStartedLeading({ epoch: N, signal })
 *   leader ──renewed──► leader: the renew deadline moves to (attempt start + renewDeadlineMs)
 *   leader ──deadline passed | lease held by another | epoch changed──► stepping down:
 *       the term signal aborts and onStoppedLeading runs at once; the elector does not campaign
 *       again until onStoppedLeading has settled (the old term's workers have drained)
 *   any ──start signal aborted──► stopping: a leader's term signal aborts and onStoppedLeading
 *       runs while the lease is still renewed (no other replica acts while we drain), then the
 *       lease is released (releaseOnStop) so a follower takes over at its next try ──► idle
 *
 * Why the deadline is safe: it is measured on the local monotonic clock from the moment the
 * successful attempt was sent, while the database sets the expiry to its own now() + ttl, which is
 * later. With renewDeadlineMs < ttlMs a leader stops acting ttl - renewDeadline (5 s by default)
 * before any other replica may take the lease. Journal writes are also fenced by epoch (SQLSTATE
 * MR001), so a leader paused past both still cannot record an action.
 */

export const LEADER_ELECTION_DEFAULTS = {
  /** The lease the instance_operations fence checks (migrations/0003). */
  name: "reconciler",
  ttlMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
  releaseOnStop: true,
} as const;

/** Gauge shared with src/reconciler/metrics.ts: 1 while this replica leads, label `name` = lease. */
export const LEADER_GAUGE_NAME = "leader_election_master_status";

/** One period of leadership. `signal` aborts the moment this replica stops leading. */
export interface LeaderTerm {
  /** Lease epoch of this term: journal writes must carry it. */
  readonly epoch: number;
  readonly signal: AbortSignal;
}

export interface LeaderElectorOptions {
  readonly store: LeaseStore;
  readonly logger: LoggerLike;
  /** Where the gauge lives; an already registered `leader_election_master_status` is reused. */
  readonly registry?: Registry;
  /** The gauge itself (e.g. ControllerMetrics.leaderElectionMasterStatus); wins over `registry`. */
  readonly gauge?: Gauge<"name">;
  /** Called when a term begins; should start work and return. A throw or rejection is logged. */
  readonly onStartedLeading: (term: LeaderTerm) => void | Promise<void>;
  /** Called when a term ends, after its signal aborted; its promise is the drain of that term. */
  readonly onStoppedLeading?: () => void | Promise<void>;
  /** Lease name. Default "reconciler", the one the journal fence checks. */
  readonly name?: string;
  /** Unique per process; default `<hostname>-<pid>-<random>`. Never share it between processes. */
  readonly identity?: string;
  readonly ttlMs?: number;
  readonly renewDeadlineMs?: number;
  readonly retryPeriodMs?: number;
  /** Give up one lease call after this long. Default max(retryPeriodMs, renewDeadlineMs / 2). */
  readonly attemptTimeoutMs?: number;
  /** Expire the lease on stop, so failover is immediate. Default true. False simulates a crash. */
  readonly releaseOnStop?: boolean;
}

interface ActiveTerm {
  readonly epoch: number;
  readonly controller: AbortController;
  deadline: NodeJS.Timeout | undefined;
}

export class LeaderElector {
  readonly name: string;
  readonly identity: string;
  private readonly store: LeaseStore;
  private readonly log: LoggerLike;
  private readonly gauge: Gauge<"name">;
  private readonly ttlMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly releaseOnStop: boolean;
  private readonly onStarted: LeaderElectorOptions["onStartedLeading"];
  private readonly onStopped: LeaderElectorOptions["onStoppedLeading"];
  private term: ActiveTerm | null = null;
  /** The last term's onStoppedLeading, until it settles. */
  private drain: Promise<void> | null = null;
  /** Terms ended so far: an attempt that spans a term's end is stale and ignored. */
  private endedTerms = 0;
  private stopping = false;
  /** The drain of the term that was active when stop was requested: the lease is renewed meanwhile. */
  private stopDrain: Promise<void> | null = null;
  private running = false;
  private lastHolder: string | null | undefined = undefined;
  private inflight: Promise<unknown> = Promise.resolve();

  constructor(options: LeaderElectorOptions) {
    const d = LEADER_ELECTION_DEFAULTS;
    this.store = options.store;
    this.log = options.logger;
    this.name = options.name ?? d.name;
    this.identity = options.identity ?? `${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`;
    this.ttlMs = options.ttlMs ?? d.ttlMs;
    this.renewDeadlineMs = options.renewDeadlineMs ?? d.renewDeadlineMs;
    this.retryPeriodMs = options.retryPeriodMs ?? d.retryPeriodMs;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? Math.max(this.retryPeriodMs, Math.ceil(this.renewDeadlineMs / 2));
    this.releaseOnStop = options.releaseOnStop ?? d.releaseOnStop;
    this.onStarted = options.onStartedLeading;
    this.onStopped = options.onStoppedLeading;
    validateTimings(this.ttlMs, this.renewDeadlineMs, this.retryPeriodMs, this.attemptTimeoutMs);
    if (this.name === "" || this.identity === "") throw new RangeError("lease name and identity must not be empty");
    this.gauge = leaderGauge(options);
    this.gauge.set({ name: this.name }, 0);
  }

  /** True while a term is active (between onStartedLeading and the abort of its signal). */
  isLeader(): boolean {
    return this.term !== null;
  }

  /** Epoch of the active term, or null when not leading. */
  epoch(): number | null {
    return this.term?.epoch ?? null;
  }

  /** Campaigns and leads until `signal` aborts; resolves once drained and (by default) released. */
  async start(signal: AbortSignal): Promise<void> {
    if (this.running) throw new Error("LeaderElector is already running");
    this.running = true;
    this.stopping = false;
    this.stopDrain = null;
    // Synchronous, so the term signal aborts in the same tick as the stop request.
    const onStop = (): void => {
      this.stopping = true;
      const wasLeading = this.term !== null;
      this.endTerm("stopping");
      if (wasLeading) this.stopDrain = this.drain ?? Promise.resolve();
    };
    signal.addEventListener("abort", onStop, { once: true });
    this.log.info({ lease: this.name, identity: this.identity }, "leader election: campaigning");
    try {
      while (!signal.aborted) {
        await this.settleDrain();
        if (signal.aborted) break;
        await this.attempt(signal);
        await pause(this.term ? this.retryPeriodMs : this.retryPeriodMs * (1 + 0.2 * Math.random()), signal);
      }
    } finally {
      signal.removeEventListener("abort", onStop);
      if (!this.stopping) onStop(); // start() failed without a stop request
      await this.shutdown();
      this.running = false;
    }
  }

  /** One acquire-or-renew call; its result moves the mode unless a term ended meanwhile. */
  private async attempt(signal: AbortSignal): Promise<void> {
    const sentAt = performance.now();
    const endedBefore = this.endedTerms;
    const call = this.store.acquireOrRenew({ name: this.name, holder: this.identity, ttlMs: this.ttlMs });
    this.inflight = call.catch(() => undefined);
    let state: LeaseState;
    try {
      state = await within(call, this.attemptTimeoutMs, signal);
    } catch (err) {
      if (!signal.aborted) {
        this.log.warn({ lease: this.name, leading: this.term !== null, err: coerceError(err) }, "leader election: lease call failed");
      }
      return;
    }
    if (this.endedTerms !== endedBefore) return;
    if (state.leader) this.held(state, sentAt);
    else this.heldByOther(state);
  }

  private held(state: LeaseState, sentAt: number): void {
    if (this.stopping) return; // renewing only to cover the drain; no new term
    const remaining = sentAt + this.renewDeadlineMs - performance.now();
    if (this.term && this.term.epoch !== state.epoch) return this.endTerm(`lease epoch changed to ${state.epoch}`);
    if (remaining <= 0) return this.endTerm("lease renewed after the renew deadline");
    if (!this.term) this.beginTerm(state.epoch);
    const term = this.term!;
    clearTimeout(term.deadline);
    term.deadline = setTimeout(() => this.endTerm("lease not renewed within the renew deadline"), remaining);
  }

  private heldByOther(state: LeaseState): void {
    if (this.term) this.endTerm(`lease taken by ${state.holder ?? "nobody"}`);
    if (state.holder !== this.lastHolder) {
      this.lastHolder = state.holder;
      this.log.info({ lease: this.name, holder: state.holder, epoch: state.epoch }, "leader election: another replica leads");
    }
  }

  private beginTerm(epoch: number): void {
    const controller = new AbortController();
    this.term = { epoch, controller, deadline: undefined };
    this.lastHolder = this.identity;
    this.gauge.set({ name: this.name }, 1);
    this.log.info({ lease: this.name, identity: this.identity, epoch }, "leader election: started leading");
    void this.guard("onStartedLeading", () => this.onStarted({ epoch, signal: controller.signal }));
  }

  /** Synchronous on purpose: the term signal aborts before anything else can run. */
  private endTerm(reason: string): void {
    const term = this.term;
    if (!term) return;
    clearTimeout(term.deadline);
    this.term = null;
    this.endedTerms += 1;
    term.controller.abort(new Error(`leadership ended: ${reason}`));
    this.gauge.set({ name: this.name }, 0);
    this.log.warn({ lease: this.name, epoch: term.epoch, reason }, "leader election: stopped leading");
    const onStopped = this.onStopped;
    this.drain = onStopped ? this.guard("onStoppedLeading", onStopped) : null;
  }

  private async settleDrain(): Promise<void> {
    const drain = this.drain;
    if (!drain) return;
    await drain;
    if (this.drain === drain) this.drain = null;
  }

  private async shutdown(): Promise<void> {
    if (this.stopDrain) await this.renewWhile(this.stopDrain);
    await this.settleDrain();
    await within(this.inflight, this.attemptTimeoutMs).catch(() => undefined);
    if (this.releaseOnStop) await this.release();
    this.gauge.set({ name: this.name }, 0);
    this.log.info({ lease: this.name, identity: this.identity }, "leader election: stopped");
  }

  /**
   * Keeps the lease alive until `done` settles, so no other replica acts while we drain. Stops
   * renewing as soon as another replica holds the lease. (If ours expired meanwhile, an attempt
   * re-takes it without starting a term; the release that follows frees it again.)
   */
  private async renewWhile(done: Promise<void>): Promise<void> {
    let finished = false;
    void done.then(() => (finished = true));
    const wait = new AbortController();
    while (this.lastHolder === this.identity) {
      await Promise.race([done, pause(this.retryPeriodMs, wait.signal)]);
      if (finished) break;
      await this.attempt(wait.signal);
    }
    await done;
    wait.abort();
  }

  private async release(): Promise<void> {
    try {
      const released = await within(this.store.release({ name: this.name, holder: this.identity }), this.attemptTimeoutMs);
      if (released) this.log.info({ lease: this.name, identity: this.identity }, "leader election: lease released");
    } catch (err) {
      this.log.warn({ lease: this.name, err: coerceError(err) }, "leader election: release failed; the lease expires by itself");
    }
  }

  /** Runs a callback; errors are logged, never thrown into the election loop. */
  private guard(what: string, fn: () => void | Promise<void>): Promise<void> {
    const logError = (err: unknown): void => this.log.error({ lease: this.name, err: coerceError(err) }, `leader election: ${what} failed`);
    try {
      return Promise.resolve(fn()).catch(logError);
    } catch (err) {
      logError(err);
      return Promise.resolve();
    }
  }
}

function validateTimings(ttlMs: number, renewDeadlineMs: number, retryPeriodMs: number, attemptTimeoutMs: number): void {
  for (const [label, value] of Object.entries({ ttlMs, renewDeadlineMs, retryPeriodMs, attemptTimeoutMs })) {
    if (!Number.isInteger(value) || value <= 0) throw new RangeError(`leader election: ${label} must be a positive integer (ms), got ${value}`);
  }
  // client-go's rule: the lease outlives the deadline, and the deadline leaves room for a retry.
  if (!(ttlMs > renewDeadlineMs && renewDeadlineMs > 1.2 * retryPeriodMs)) {
    throw new RangeError(
      `leader election: need ttlMs > renewDeadlineMs > 1.2 × retryPeriodMs, got ${ttlMs} / ${renewDeadlineMs} / ${retryPeriodMs}`,
    );
  }
}

function leaderGauge(options: LeaderElectorOptions): Gauge<"name"> {
  if (options.gauge) return options.gauge;
  const registry = options.registry;
  if (!registry) throw new TypeError("leader election: pass `registry` or `gauge`");
  const existing = registry.getSingleMetric(LEADER_GAUGE_NAME);
  if (existing instanceof Gauge) return existing as Gauge<"name">;
  if (existing) throw new TypeError(`${LEADER_GAUGE_NAME} is registered but is not a Gauge`);
  return new Gauge({
    name: LEADER_GAUGE_NAME,
    help: "1 while this replica holds the lease, 0 otherwise; 'name' is the lease name",
    labelNames: ["name"] as const,
    registers: [registry],
  });
}

/** Settles like `promise`, or rejects after `ms` / when `signal` aborts (the call is abandoned). */
function within<T>(promise: Promise<T>, ms: number, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      settle();
    };
    const onAbort = (): void => finish(() => reject(coerceError(signal?.reason)));
    const timer = setTimeout(() => finish(() => reject(new Error(`lease call timed out after ${ms} ms`))), ms);
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (value) => finish(() => resolve(value)),
      (err: unknown) => finish(() => reject(coerceError(err))),
    );
  });
}
