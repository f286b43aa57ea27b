/**
 * Prometheus metrics of the `/v1` API. Labels are route templates (`/v1/instances/:id`), never
 * ids, and tiers: bounded however many clients call.
 */
import { Counter, Histogram, type Registry } from "prom-client";

import { TIER_RATE_LIMITS } from "./limits.ts";

export interface ApiMetrics {
  readonly requests: Counter<"route" | "method" | "code">;
  readonly seconds: Histogram<"route" | "method">;
  readonly rateLimited: Counter<"tier">;
}

export function createApiMetrics(registry: Registry): ApiMetrics {
  const metrics: ApiMetrics = {
    requests: new Counter({
      name: "mindroom_api_requests_total",
      help: "Requests to the /v1 API by route template, method and status code",
      labelNames: ["route", "method", "code"],
      registers: [registry],
    }),
    seconds: new Histogram({
      name: "mindroom_api_request_seconds",
      help: "Time to answer a /v1 API request, by route template and method",
      labelNames: ["route", "method"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    rateLimited: new Counter({
      name: "mindroom_api_rate_limited_total",
      help: "Requests answered 429 by the /v1 rate limits, by tier (`address` for per-address limits)",
      labelNames: ["tier"],
      registers: [registry],
    }),
  };
  for (const tier of [...Object.keys(TIER_RATE_LIMITS), "address"]) metrics.rateLimited.inc({ tier }, 0);
  return metrics;
}
