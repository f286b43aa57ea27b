import { setTimeout as delay } from "node:timers/promises";

/** Resolves after `ms` (at once when it is not positive), or as soon as `signal` aborts; never rejects on the abort. */
export function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(Math.max(0, ms), undefined, { signal }).catch((error: unknown) => {
    if (!signal.aborted) throw error;
  });
}
