/**
 * Webhook delivery from the fake Stripe: events signed with the endpoint secret
 * (`stripe.webhooks.generateTestHeaderString`), delivered according to a plan that can duplicate,
 * reorder, drop or sign "late" (a timestamp past the 300 s tolerance, which the webhook must
 * refuse, as it refuses Stripe's own stale deliveries).
 */
import Stripe from "stripe";

import type { JsonObject } from "../../src/sources/stripe/objects.ts";

export interface Delivery {
  readonly event: JsonObject;
  /** Sign with a timestamp this many seconds before the signing clock (default 0). */
  readonly ageSeconds?: number;
}

/** The deliveries in the order they are POSTed. An event absent from it is dropped. */
export type DeliveryPlan = readonly Delivery[];

export interface PlanChoices {
  /** Sort key per event: deliveries go out by ascending key (ties keep creation order). */
  readonly order?: readonly number[];
  readonly duplicate?: readonly boolean[];
  readonly drop?: readonly boolean[];
  readonly late?: readonly boolean[];
}

export function planDeliveries(events: readonly JsonObject[], choices: PlanChoices = {}): DeliveryPlan {
  const entries: Array<{ key: number; index: number; delivery: Delivery }> = [];
  events.forEach((event, index) => {
    if (choices.drop?.[index]) return;
    const key = choices.order?.[index] ?? index;
    const delivery: Delivery = choices.late?.[index] ? { event, ageSeconds: 400 } : { event };
    entries.push({ key, index, delivery });
    if (choices.duplicate?.[index]) entries.push({ key: key + 0.5, index, delivery: { event } });
  });
  entries.sort((a, b) => a.key - b.key || a.index - b.index);
  return entries.map((e) => e.delivery);
}

export function signedRequest(event: JsonObject, secret: string, nowSeconds: number, ageSeconds = 0): { body: string; signature: string } {
  const body = JSON.stringify(event);
  const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp: nowSeconds - ageSeconds });
  return { body, signature };
}

export interface DeliveryResult {
  readonly eventId: string;
  readonly status: number;
  readonly body: string;
}

/** POSTs the plan in order (one at a time, like one Stripe endpoint) and returns every answer. */
export async function deliver(
  url: string,
  plan: DeliveryPlan,
  secret: string,
  signingNow: () => number = () => Math.floor(Date.now() / 1000),
): Promise<DeliveryResult[]> {
  const results: DeliveryResult[] = [];
  for (const d of plan) {
    const { body, signature } = signedRequest(d.event, secret, signingNow(), d.ageSeconds ?? 0);
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body });
    results.push({ eventId: String(d.event.id), status: res.status, body: await res.text() });
  }
  return results;
}
