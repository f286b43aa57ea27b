import { setTimeout as delay } from "node:timers/promises";

/** Resolves after `ms` (at once when it is not positive), or as soon as `signal` aborts; never rejects on the abort. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(Math.max(0, ms), undefined, { signal }).catch((error: unknown) => {
    if (!signal.aborted) throw error;
  });
}

/**
 * Resolves once `performance.now()` has reached `at`, or as soon as `signal` aborts. A Node timer
 * counts from the event loop's cached clock, which lags when the loop was busy, so it can fire a
 * millisecond or more early: the rest is waited out.
 */
export async function pauseUntil(at: number, signal: AbortSignal): Promise<void> {
  for (let left = at - performance.now(); left > 0 && !signal.aborted; left = at - performance.now()) await pause(left, signal);
}
