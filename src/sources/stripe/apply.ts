/**
 * Applying Stripe state to the billing tables, in the two modes of the inbox worker:
 *
 * - API mode (`STRIPE_API_KEY` set): an event is only a trigger. `fetchCustomerState` re-reads the
 *   customer and every subscription of it (`status: 'all'`, prices expanded, all pages), and
 *   `applyCustomerState` writes that snapshot. Duplicates, reordering, same-second events and
 *   drops (healed by catch-up) cannot leave a wrong state, because the snapshot is the truth at
 *   fetch time and fetches of one customer are serialised.
 * - Payload mode (no key): `applyEventPayload` writes the object in the event, behind the ordering
 *   guard of map.ts (`created` + terminal statuses + a lifecycle-rank tie-break). Best
 *   effort: see `describeMode`.
 */
import type Stripe from "stripe";

import { type BillingSource, findAccountIdByCustomer, upsertAccountFromCustomer } from "../../state/billing.ts";
import type { Db } from "../../state/sql.ts";
import { type PendingEvent, wakeCustomers } from "../../state/stripe-events.ts";
import { classifyEventType, type CustomerSnapshot, HANDLED_EVENT_TYPES, mapCustomer, mapSubscription, type PriceTierMap, type SubscriptionSnapshot } from "./map.ts";
import { applySubscription } from "./subscriptions.ts";

/** The parts of the stripe-node client the controller uses (tests pass the real client, pointed at the fake). */
export type StripeClient = Pick<Stripe, "customers" | "subscriptions" | "events">;

export interface CustomerState {
  readonly customer: CustomerSnapshot;
  /** Raw subscription objects (mapped when applied, so an unknown price fails the apply). */
  readonly subscriptions: readonly unknown[];
  readonly fetchedAt: Date;
}

export function describeMode(apiKeyConfigured: boolean): string {
  return apiKeyConfigured
    ? "stripe: API mode: every event re-reads the customer and all its subscriptions from the Stripe API; " +
        "catch-up lists /v1/events and sweeps all subscriptions daily"
    : "stripe: payload mode (no STRIPE_API_KEY): events are applied from their payloads; ordering is best-effort " +
        "(guarded by event `created`, terminal statuses never revert, same-second ties by lifecycle rank and event type then " +
        "arrival); missed webhooks are not recovered. Set STRIPE_API_KEY for exact convergence";
}

/** Re-reads one customer and all of its subscriptions (every page). */
export async function fetchCustomerState(stripe: StripeClient, customerId: string, now: () => Date): Promise<CustomerState> {
  const customer = mapCustomer(await stripe.customers.retrieve(customerId));
  const subscriptions: unknown[] = [];
  const list = stripe.subscriptions.list({ customer: customerId, status: "all", expand: ["data.items.data.price"], limit: 100 });
  for await (const sub of list) subscriptions.push(sub);
  return { customer, subscriptions, fetchedAt: now() };
}

export interface AppliedCustomer {
  readonly accountId: string | null;
  readonly subscriptions: number;
  readonly changed: number;
}

/** Writes a fetched snapshot. Every subscription is mapped first: one unknown price fails the whole customer. */
export async function applyCustomerState(sql: Db, state: CustomerState, priceTiers: PriceTierMap, source: BillingSource): Promise<AppliedCustomer> {
  const snaps: SubscriptionSnapshot[] = state.subscriptions.map((s) => mapSubscription(s, priceTiers));
  const { accountId } = await upsertAccountFromCustomer(sql, state.customer, source);
  if (accountId === null) return { accountId, subscriptions: snaps.length, changed: 0 };
  let changed = 0;
  for (const snap of snaps) {
    const applied = await applySubscription(sql, snap, { accountId, stateAt: state.fetchedAt, guard: false, source });
    if (applied.result === "created" || applied.result === "updated") changed += 1;
  }
  return { accountId, subscriptions: snaps.length, changed };
}

/** What became of one event applied from its payload. */
export type PayloadOutcome =
  | { readonly kind: "applied"; readonly detail: string }
  | { readonly kind: "skipped"; readonly detail: string }
  | { readonly kind: "deferred"; readonly detail: string };

/**
 * Whether applying this event's payload can change anything: false for the kinds
 * `applyEventPayload` skips without a query, so the worker need not open a savepoint for them.
 */
export function payloadHasState(type: string): boolean {
  const kind = classifyEventType(type);
  return kind === "customer" || kind === "subscription";
}

/** The event types `applyEventPayload` reads the payload of: the worker loads no other payloads. */
export const PAYLOAD_EVENT_TYPES: readonly string[] = HANDLED_EVENT_TYPES.filter(payloadHasState);

/**
 * Applies one event's own object. `invoice.*` and `checkout.session.completed` change nothing in
 * this mode: a failed payment moves the subscription to `past_due` through the
 * `customer.subscription.updated` Stripe sends with it, never through the invoice event alone.
 * The webhook of a daemon in this mode stores them `ignored` (sources.ts); those stored pending
 * otherwise (in API mode before a restart without the key) are skipped here.
 */
export async function applyEventPayload(sql: Db, event: PendingEvent, priceTiers: PriceTierMap): Promise<PayloadOutcome> {
  const source = payloadSource(event);
  switch (classifyEventType(event.type)) {
    case "customer": {
      const customer = customerOfEvent(event);
      const { change } = await upsertAccountFromCustomer(sql, customer, source);
      await wakeCustomers(sql, [customer.customerId]);
      return { kind: "applied", detail: `account ${change}` };
    }
    case "subscription": {
      const snap = subscriptionOfEvent(event, priceTiers);
      const accountId = await findAccountIdByCustomer(sql, snap.customerId);
      if (accountId === null) return { kind: "deferred", detail: `customer ${snap.customerId} not known yet: waiting for its customer event` };
      const applied = await applySubscription(sql, snap, { accountId, stateAt: event.created, guard: true, eventType: event.type, source });
      return applied.result === "stale" || applied.result === "terminal"
        ? { kind: "skipped", detail: `${applied.result}: older than the applied state` }
        : { kind: "applied", detail: `subscription ${applied.result}` };
    }
    case "invoice":
    case "checkout":
    case "ignored":
      return { kind: "skipped", detail: "no state in this payload without an API key" };
  }
}

/** Where a write applied from an event's payload came from. */
export const payloadSource = (event: PendingEvent): BillingSource => ({ via: "webhook-payload", eventId: event.id });

const payloadObject = (event: PendingEvent): unknown => (event.payload as { data?: { object?: unknown } } | null)?.data?.object;

/** The customer in a `customer.*` event; `customer.deleted` carries the customer as it was (no `deleted` flag in the object). */
export function customerOfEvent(event: PendingEvent): CustomerSnapshot {
  const mapped = mapCustomer(payloadObject(event));
  return { ...mapped, deleted: mapped.deleted || event.type === "customer.deleted" };
}

/** The subscription in a `customer.subscription.*` event (throws for a price no tier has). */
export const subscriptionOfEvent = (event: PendingEvent, priceTiers: PriceTierMap): SubscriptionSnapshot => mapSubscription(payloadObject(event), priceTiers);
