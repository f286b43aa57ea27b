import { describe, expect, test } from "vitest";

import {
  billingChanges,
  classifyEventType,
  eventTypeLabel,
  inboxKeys,
  invoiceSubscriptionId,
  mapCustomer,
  mapSubscription,
  type OrderingDecision,
  orderingDecision,
  storedRank,
  stripeEventSchema,
  tierOfPrice,
  UnknownPriceError,
} from "../../src/sources/stripe/map.ts";
import { priceObject, subscriptionObject } from "../../src/sources/stripe/objects.ts";

const T0 = 1_760_000_000;
const d = (s: number): Date => new Date(s * 1000);

function currentSub(overrides: Partial<Parameters<typeof subscriptionObject>[0]> = {}): Record<string, unknown> {
  return subscriptionObject({
    id: "sub_1",
    itemId: "si_1",
    customer: "cus_1",
    price: priceObject({ id: "price_s", tier: "starter", product: "prod_s", created: T0 }),
    status: "active",
    created: T0,
    currentPeriodStart: T0,
    currentPeriodEnd: T0 + 100,
    cancelAtPeriodEnd: false,
    cancelAt: null,
    canceledAt: null,
    endedAt: null,
    trialStart: null,
    trialEnd: null,
    latestInvoice: null,
    ...overrides,
  });
}

describe("tierOfPrice", () => {
  const cases: Record<string, { reason: string; price: Parameters<typeof tierOfPrice>[0]; map?: Record<string, "starter" | "enterprise">; want: string }> = {
    "lookup_key with suffix": { reason: "`<tier>_monthly` names the tier", price: { id: "p", lookup_key: "professional_monthly" }, want: "professional" },
    "bare lookup_key": { reason: "a lookup_key equal to a tier name", price: { id: "p", lookup_key: "enterprise" }, want: "enterprise" },
    "metadata.tier": { reason: "no useful lookup_key: metadata.tier", price: { id: "p", lookup_key: "gold_plan", metadata: { tier: "starter" } }, want: "starter" },
    "configured map": { reason: "STRIPE_PRICE_TIERS is the fallback", price: { id: "price_legacy", lookup_key: null, metadata: {} }, map: { price_legacy: "enterprise" }, want: "enterprise" },
    "price id string": { reason: "an unexpanded price resolves through the map", price: "price_x", map: { price_x: "starter" }, want: "starter" },
    "lookup_key beats map": { reason: "the price itself wins over configuration", price: { id: "price_legacy", lookup_key: "starter_yearly" }, map: { price_legacy: "enterprise" }, want: "starter" },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(tierOfPrice(tc.price, tc.map ?? {}), tc.reason).toBe(tc.want));
  }

  test("an unknown price is an error that names it, never free", () => {
    expect(() => tierOfPrice({ id: "price_mystery", lookup_key: "gold" }, {})).toThrow(UnknownPriceError);
    expect(() => tierOfPrice({ id: "price_mystery", lookup_key: "gold" }, {})).toThrow(/price_mystery.*lookup_key gold/);
  });
});

describe("mapSubscription", () => {
  test("current API: periods from the item, status verbatim, tier from the price", () => {
    const snap = mapSubscription(currentSub({ status: "past_due", trialEnd: T0 + 5, canceledAt: T0 + 7, cancelAtPeriodEnd: true }), {});
    expect(snap).toEqual({
      stripeSubscriptionId: "sub_1",
      customerId: "cus_1",
      priceId: "price_s",
      tier: "starter",
      status: "past_due",
      currentPeriodStart: d(T0),
      currentPeriodEnd: d(T0 + 100),
      cancelAtPeriodEnd: true,
      canceledAt: d(T0 + 7),
      trialEndsAt: d(T0 + 5),
    });
  });

  test("old API (before basil): periods from the top level, expanded customer object", () => {
    const old = {
      id: "sub_old",
      object: "subscription",
      customer: { id: "cus_9", object: "customer" },
      status: "trialing",
      cancel_at_period_end: false,
      canceled_at: null,
      trial_end: T0 + 50,
      current_period_start: T0,
      current_period_end: T0 + 50,
      items: { data: [{ id: "si", price: { id: "price_old", lookup_key: null, metadata: { tier: "enterprise" } } }] },
    };
    const snap = mapSubscription(old, {});
    expect(snap.customerId).toBe("cus_9");
    expect(snap.tier).toBe("enterprise");
    expect(snap.currentPeriodEnd).toEqual(d(T0 + 50));
  });

  test("several items: the highest tier wins, every price must resolve", () => {
    const sub = currentSub();
    const items = (sub.items as { data: Record<string, unknown>[] }).data;
    items.push({ ...items[0], id: "si_2", price: { id: "price_e", lookup_key: "enterprise_monthly" }, current_period_end: T0 + 200 });
    const snap = mapSubscription(sub, {});
    expect(snap.tier).toBe("enterprise");
    expect(snap.priceId).toBe("price_e");
    expect(snap.currentPeriodEnd).toEqual(d(T0 + 200));
    items.push({ ...items[0], id: "si_3", price: { id: "price_unknown" } });
    expect(() => mapSubscription(sub, {})).toThrow(/price_unknown/);
  });

  test("each of Stripe's eight statuses maps verbatim; anything else is refused", () => {
    for (const status of ["incomplete", "incomplete_expired", "trialing", "active", "past_due", "canceled", "unpaid", "paused"] as const) {
      expect(mapSubscription(currentSub({ status }), {}).status).toBe(status);
    }
    expect(() => mapSubscription({ ...currentSub(), status: "cancelled" }, {})).toThrow();
  });
});

describe("mapCustomer", () => {
  test("email is normalised; company from metadata; deleted flag", () => {
    expect(mapCustomer({ id: "cus_1", email: " Ann@Example.COM ", name: "Ann", metadata: { company_name: "ACME" } })).toEqual({
      customerId: "cus_1",
      email: "ann@example.com",
      fullName: "Ann",
      companyName: "ACME",
      deleted: false,
    });
    expect(mapCustomer({ id: "cus_2", object: "customer", deleted: true })).toMatchObject({ customerId: "cus_2", email: null, deleted: true });
  });
});

describe("invoiceSubscriptionId", () => {
  test("new API: parent.subscription_details.subscription; old API: invoice.subscription; none: null", () => {
    expect(invoiceSubscriptionId({ id: "in_1", parent: { type: "subscription_details", subscription_details: { subscription: "sub_new" } } })).toBe("sub_new");
    expect(invoiceSubscriptionId({ id: "in_2", subscription: "sub_old" })).toBe("sub_old");
    expect(invoiceSubscriptionId({ id: "in_3", parent: null })).toBeNull();
  });
});

describe("event classification", () => {
  test("kinds, metric labels and inbox keys", () => {
    expect(classifyEventType("customer.updated")).toBe("customer");
    expect(classifyEventType("customer.subscription.paused")).toBe("subscription");
    expect(classifyEventType("invoice.payment_failed")).toBe("invoice");
    expect(classifyEventType("charge.succeeded")).toBe("ignored");
    expect(eventTypeLabel("charge.succeeded")).toBe("other");
    expect(eventTypeLabel("invoice.paid")).toBe("invoice.paid");
    const envelope = stripeEventSchema.parse({ id: "evt_1", object: "event", type: "invoice.paid", created: T0, data: { object: { id: "in_1", customer: "cus_7" } } });
    expect(inboxKeys(envelope)).toEqual({ objectId: "in_1", customerId: "cus_7" });
    const customerEvent = stripeEventSchema.parse({ id: "evt_2", object: "event", type: "customer.created", created: T0, data: { object: { id: "cus_8" } } });
    expect(inboxKeys(customerEvent)).toEqual({ objectId: "cus_8", customerId: "cus_8" });
  });

  test("the envelope keeps only what the inbox keys on, and takes a customer of any shape", () => {
    const event = (customer: unknown) => ({ id: "evt_3", object: "event", type: "invoice.paid", created: T0, request: { id: null }, data: { object: { id: "in_2", customer, total: 900, lines: { data: [] } } } });
    const expanded = stripeEventSchema.parse(event({ id: "cus_9", object: "customer", email: "a@example.com" }));
    expect(inboxKeys(expanded)).toEqual({ objectId: "in_2", customerId: "cus_9" });
    expect(expanded).not.toHaveProperty("request");
    expect(expanded.data.object).not.toHaveProperty("total");
    for (const odd of [null, 42, { name: "no id" }]) expect(inboxKeys(stripeEventSchema.parse(event(odd)))).toEqual({ objectId: "in_2", customerId: null });
  });
});

describe("orderingDecision (payload mode)", () => {
  const cases: Record<string, { reason: string; stored: Parameters<typeof orderingDecision>[0]; incoming: Parameters<typeof orderingDecision>[1]; want: OrderingDecision }> = {
    "first state": { reason: "nothing stored yet", stored: null, incoming: { status: "trialing", stateAt: d(T0) }, want: "apply" },
    newer: { reason: "a later event applies", stored: { status: "active", stateAt: d(T0) }, incoming: { status: "past_due", stateAt: d(T0 + 1) }, want: "apply" },
    older: { reason: "a late older event is stale", stored: { status: "past_due", stateAt: d(T0 + 1) }, incoming: { status: "active", stateAt: d(T0) }, want: "stale" },
    "terminal stays": { reason: "canceled is terminal in Stripe: a later-stamped non-terminal payload cannot revive it", stored: { status: "canceled", stateAt: d(T0) }, incoming: { status: "active", stateAt: d(T0 + 9) }, want: "terminal" },
    "same second forward": { reason: "created(incomplete) + updated(active) in one second: forward rank wins", stored: { status: "incomplete", stateAt: d(T0) }, incoming: { status: "active", stateAt: d(T0) }, want: "apply" },
    "same second backward": { reason: "the same pair reversed: the lower rank loses", stored: { status: "active", stateAt: d(T0) }, incoming: { status: "incomplete", stateAt: d(T0) }, want: "stale" },
    "same second equal rank": { reason: "equal rank (trial_will_end + updated): the later-processed one wins", stored: { status: "trialing", stateAt: d(T0) }, incoming: { status: "trialing", stateAt: d(T0) }, want: "apply" },
    "resumed after paused, same second": { reason: "a resumed follows the paused it undoes, though active ranks below paused", stored: { status: "paused", stateAt: d(T0) }, incoming: { status: "active", stateAt: d(T0), eventType: "customer.subscription.resumed" }, want: "apply" },
    "paused after resumed, same second": { reason: "the pause processed after its resume (reordered delivery) is stale", stored: { status: "active", stateAt: d(T0), rank: storedRank("active", [{ type: "customer.subscription.resumed", status: "active" }]) }, incoming: { status: "paused", stateAt: d(T0), eventType: "customer.subscription.paused" }, want: "stale" },
    "deleted follows everything": { reason: "a deleted in the same second as anything wins", stored: { status: "paused", stateAt: d(T0), rank: storedRank("paused", [{ type: "customer.subscription.paused", status: "paused" }]) }, incoming: { status: "canceled", stateAt: d(T0), eventType: "customer.subscription.deleted" }, want: "apply" },
    "unguarded row": { reason: "a row never stamped (written by SQL) accepts the payload", stored: { status: "active", stateAt: null }, incoming: { status: "active", stateAt: d(T0) }, want: "apply" },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(orderingDecision(tc.stored, tc.incoming), tc.reason).toBe(tc.want));
  }
});

describe("billingChanges", () => {
  test("no stored row: every field is new; identical snapshot: no change; one field: one entry", () => {
    const snap = mapSubscription(currentSub(), {});
    expect(Object.keys(billingChanges(null, snap))).toHaveLength(8);
    const stored = { ...snap };
    expect(billingChanges(stored, snap)).toEqual({});
    expect(billingChanges({ ...stored, tier: "professional" }, snap)).toEqual({ tier: { old: "professional", new: "starter" } });
  });
});
