/**
 * Prometheus metrics of the Stripe source. Registered on an injected Registry (never the global
 * one) and zero-initialised, so dashboards see every series from start-up. Labels stay
 * low-cardinality: `type` is a handled event type or "other" (or "unknown" before the body is
 * trusted), never an id.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

import { HANDLED_EVENT_TYPES } from "./map.ts";

/** Outcomes counted by `mindroom_stripe_events_total{result}`. */
export const STRIPE_EVENT_RESULTS = [
  "received",
  "duplicate",
  "ignored",
  "processed",
  "deferred",
  "failed",
  "dead",
  "caught_up",
  "invalid_signature",
  "invalid_body",
  "too_large",
  "store_failed",
] as const;
export type StripeEventResult = (typeof STRIPE_EVENT_RESULTS)[number];

/** Results decided before the event's type can be trusted: they carry type="unknown". */
const UNTYPED_RESULTS: readonly StripeEventResult[] = ["invalid_signature", "invalid_body", "too_large"];

export interface StripeMetrics {
  readonly events: Counter<"type" | "result">;
  readonly inboxPending: Gauge;
  readonly inboxOldestPendingSeconds: Gauge;
  readonly inboxDead: Gauge;
  readonly webhookSeconds: Histogram<"code">;
}

export function createStripeMetrics(registry: Registry): StripeMetrics {
  const metrics: StripeMetrics = {
    events: new Counter({
      name: "mindroom_stripe_events_total",
      help: "Stripe events by type and outcome (webhook answers, inbox processing, catch-up)",
      labelNames: ["type", "result"],
      registers: [registry],
    }),
    inboxPending: new Gauge({
      name: "mindroom_stripe_inbox_pending",
      help: "Stripe events stored and not yet processed (status pending)",
      registers: [registry],
    }),
    inboxOldestPendingSeconds: new Gauge({
      name: "mindroom_stripe_inbox_oldest_pending_seconds",
      help: "Age of the oldest pending Stripe event in seconds (0 when none)",
      registers: [registry],
    }),
    inboxDead: new Gauge({
      name: "mindroom_stripe_inbox_dead",
      help: "Stripe events that exhausted their attempts (status dead): an operator must look",
      registers: [registry],
    }),
    webhookSeconds: new Histogram({
      name: "mindroom_stripe_webhook_seconds",
      help: "Time to answer POST /webhooks/stripe, by HTTP status code",
      labelNames: ["code"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
  for (const result of STRIPE_EVENT_RESULTS) {
    if (UNTYPED_RESULTS.includes(result)) {
      metrics.events.inc({ type: "unknown", result }, 0);
      continue;
    }
    for (const type of [...HANDLED_EVENT_TYPES, "other"]) metrics.events.inc({ type, result }, 0);
  }
  for (const code of ["200", "400", "405", "413", "500"]) metrics.webhookSeconds.zero({ code });
  return metrics;
}
