/**
 * Retry delays (STYLE rule 6): one jittered exponential formula, and the per-key rate limiter the
 * work queue uses for `addRateLimited`. Pure apart from the injected `random`; no clock.
 */

export interface BackoffOptions {
  /** Delay after the first failure (attempt 0). */
  readonly minDelayMs: number;
  /** Upper bound of every delay, jitter included. */
  readonly maxDelayMs: number;
  /** Growth factor per failure. */
  readonly multiplier: number;
  /** Relative jitter: 0.5 spreads a delay uniformly over ±50 %. 0 disables it. */
  readonly jitter: number;
}

/** DESIGN.md section 8: 1 s doubling to 5 min, ±50 % jitter (graphile-worker's calculateDelay). */
export const DEFAULT_BACKOFF = {
  minDelayMs: 1_000,
  maxDelayMs: 300_000,
  multiplier: 2,
  jitter: 0.5,
} as const satisfies BackoffOptions;

/**
 * Spreads `ms` uniformly over `ms·(1 ± fraction)`. `random` returns [0, 1) like Math.random, so
 * `random = () => 0.5` returns `ms` unchanged (handy in tests).
 */
export function jitter(ms: number, fraction: number, random: () => number = Math.random): number {
  return ms * (1 + fraction * (2 * random() - 1));
}

/**
 * Delay before retry number `attempt` (0 = after the first failure):
 * `min(max, minDelay·multiplier^attempt)`, jittered, then capped again at `maxDelayMs` so no wait
 * ever exceeds the cap (at the cap the spread is `[max·(1−jitter), max]`, which still breaks up
 * herds). Non-finite or negative attempts count as 0. Returns whole milliseconds.
 */
export function calculateDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const n = Number.isFinite(attempt) && attempt > 0 ? Math.floor(attempt) : 0;
  const base = Math.min(options.maxDelayMs, options.minDelayMs * options.multiplier ** n);
  const spread = jitter(base, options.jitter, random);
  return Math.round(Math.min(options.maxDelayMs, Math.max(0, spread)));
}

/** client-go's RateLimiter: how long a key waits before its next retry. */
export interface RateLimiter {
  /** Records one more failure of `key` and returns how long to wait before retrying it. */
  when(key: string): number;
  /** Success: clears the failure count of `key`. Idempotent. */
  forget(key: string): void;
  /** Failures of `key` since the last `forget`. */
  numRequeues(key: string): number;
}

/**
 * client-go's ItemExponentialFailureRateLimiter with jitter: each key has its own failure count,
 * and the wait grows with it. Memory is one map entry per currently failing key.
 */
export class ExponentialFailureRateLimiter implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly options: BackoffOptions;
  private readonly random: () => number;

  constructor(options: Partial<BackoffOptions> = {}, random: () => number = Math.random) {
    this.options = { ...DEFAULT_BACKOFF, ...options };
    validateBackoff(this.options);
    this.random = random;
  }

  when(key: string): number {
    const attempt = this.failures.get(key) ?? 0;
    this.failures.set(key, attempt + 1);
    return calculateDelay(attempt, this.options, this.random);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/** Fails at wiring time on options that would make every retry immediate or never. */
export function validateBackoff(options: BackoffOptions): void {
  const { minDelayMs, maxDelayMs, multiplier, jitter: spread } = options;
  if (!(minDelayMs > 0 && Number.isFinite(minDelayMs))) throw new RangeError("backoff minDelayMs must be a positive number");
  if (!(maxDelayMs >= minDelayMs && Number.isFinite(maxDelayMs))) throw new RangeError("backoff maxDelayMs must be >= minDelayMs");
  if (!(multiplier >= 1 && Number.isFinite(multiplier))) throw new RangeError("backoff multiplier must be >= 1");
  if (!(spread >= 0 && spread < 1)) throw new RangeError("backoff jitter must be in [0, 1)");
}
