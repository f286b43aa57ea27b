/**
 * Rate limits of the `/v1` API: a token bucket per API key sized by the account's tier (the
 * per-minute quota is also the burst), and one per client address for failed authentications
 * (brute force) and for the unauthenticated OpenAPI document. Pure.
 */
import type { Tier } from "../../reconciler/types.ts";

export interface RateLimit {
  /** Requests per minute, also the largest burst. */
  readonly perMinute: number;
}

/** Per key, by tier. Free has no API access at all (403 before any bucket is touched). */
export const TIER_RATE_LIMITS: Readonly<Record<Exclude<Tier, "free">, RateLimit>> = {
  starter: { perMinute: 60 },
  professional: { perMinute: 600 },
  enterprise: { perMinute: 6_000 },
};

/** Failed authentications per client address per minute, before it is answered 429. */
export const FAILED_AUTH_PER_MINUTE = 10;
/** Requests per minute per client address for what needs no key (the OpenAPI document). */
export const ANONYMOUS_PER_MINUTE = 60;

export function bucketOf(name: string, perMinute: number): { name: string; capacity: number; refillPerSecond: number } {
  return { name, capacity: perMinute, refillPerSecond: perMinute / 60 };
}
