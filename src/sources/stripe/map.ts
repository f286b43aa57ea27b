/**
 * Pure mapping from Stripe objects to MindRoom billing state. No I/O, no clock: callers pass
 * everything in. Table-tested in test/stripe/stripe-map.test.ts.
 *
 * Contracts
 * - Stripe input is parsed with zod, leniently (unknown fields pass): both current
 *   (`2025-03-31.basil` and later: periods on subscription items, `invoice.parent`) and older API
 *   shapes (top-level `current_period_*`, `invoice.subscription`) are understood.
 * - Status is Stripe's, verbatim. Tier comes from the price: `lookup_key` (`<tier>` or
 *   `<tier>_<anything>`), then `metadata.tier`, then the configured `STRIPE_PRICE_TIERS` map. A price
 *   none of these resolve is an error naming the price: never silently `free`.
 */
import { z } from "zod";

import { SUBSCRIPTION_STATUSES, type SubscriptionStatus, type Tier, TIERS } from "../../reconciler/types.ts";
import type { CustomerSnapshot, StoredBilling, SubscriptionSnapshot } from "../../state/billing.ts";
import type { NewStripeEvent } from "../../state/stripe-events.ts";

/** Price id → tier, from the `STRIPE_PRICE_TIERS` configuration (fallback after the price itself). */
export type PriceTierMap = Readonly<Record<string, Tier>>;

const idOrObject = z.union([z.string(), z.object({ id: z.string() }).loose()]);
const unixSeconds = z.number().int();

/**
 * The envelope of a snapshot event (`POST /webhooks/stripe`, `GET /v1/events`): what the inbox
 * stores an event under, and nothing else. The parsed value keeps only these fields (zod's
 * default, strip): the payload is stored as received, and a loose parse, which copied every field
 * of the event's object, cost the webhook's request thread about 20 µs per event.
 */
export const stripeEventSchema = z.object({
  id: z.string().min(1),
  object: z.literal("event"),
  type: z.string().min(1),
  created: unixSeconds,
  api_version: z.string().nullish(),
  livemode: z.boolean().optional(),
  // customer: any shape (a string, an expanded object, null): only a key, never a reason to refuse an event.
  data: z.object({ object: z.object({ id: z.string().optional(), object: z.string().optional(), customer: z.unknown().optional() }) }),
});
export type StripeEventEnvelope = z.infer<typeof stripeEventSchema>;

const priceSchema = z
  .object({
    id: z.string(),
    lookup_key: z.string().nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
  })
  .loose();
export type StripePriceLike = z.infer<typeof priceSchema>;

const itemSchema = z
  .object({
    id: z.string().optional(),
    price: z.union([z.string(), priceSchema]),
    current_period_start: unixSeconds.nullish(),
    current_period_end: unixSeconds.nullish(),
  })
  .loose();

export const stripeSubscriptionSchema = z
  .object({
    id: z.string(),
    object: z.literal("subscription").optional(),
    customer: idOrObject,
    status: z.enum(SUBSCRIPTION_STATUSES),
    cancel_at_period_end: z.boolean().default(false),
    canceled_at: unixSeconds.nullish(),
    trial_end: unixSeconds.nullish(),
    current_period_start: unixSeconds.nullish(),
    current_period_end: unixSeconds.nullish(),
    items: z.object({ data: z.array(itemSchema) }).loose(),
  })
  .loose();
export type StripeSubscriptionLike = z.input<typeof stripeSubscriptionSchema>;

export const stripeCustomerSchema = z
  .object({
    id: z.string(),
    deleted: z.boolean().optional(),
    email: z.string().nullish(),
    name: z.string().nullish(),
    metadata: z.record(z.string(), z.string()).nullish(),
  })
  .loose();

const invoiceSchema = z
  .object({
    id: z.string().optional(),
    customer: idOrObject.nullish(),
    subscription: idOrObject.nullish(),
    parent: z
      .object({ subscription_details: z.object({ subscription: idOrObject.nullish() }).loose().nullish() })
      .loose()
      .nullish(),
  })
  .loose();

export type { CustomerSnapshot, StoredBilling, SubscriptionSnapshot };

/** A price that names no tier anywhere. The event is retried and ends `dead` with this message. */
export class UnknownPriceError extends Error {
  override readonly name = "UnknownPriceError";
  constructor(readonly priceId: string, lookupKey: string | null) {
    super(
      `price ${priceId}${lookupKey ? ` (lookup_key ${lookupKey})` : ""} maps to no tier: ` +
        "set its lookup_key to <tier>_..., its metadata.tier, or add it to STRIPE_PRICE_TIERS",
    );
  }
}

const TIER_SET: ReadonlySet<string> = new Set(TIERS);
const isTier = (value: string | null | undefined): value is Tier => value !== null && value !== undefined && TIER_SET.has(value);

/** Tier of one price; throws `UnknownPriceError` when nothing names one. */
export function tierOfPrice(price: StripePriceLike | string, priceTiers: PriceTierMap): Tier {
  const p = typeof price === "string" ? { id: price, lookup_key: null, metadata: null } : price;
  const fromLookup = p.lookup_key ? p.lookup_key.split("_")[0] : undefined;
  if (isTier(p.lookup_key)) return p.lookup_key;
  if (isTier(fromLookup)) return fromLookup;
  const fromMetadata = p.metadata?.tier;
  if (isTier(fromMetadata)) return fromMetadata;
  const fromConfig = priceTiers[p.id];
  if (fromConfig !== undefined) return fromConfig;
  throw new UnknownPriceError(p.id, p.lookup_key ?? null);
}

const toDate = (seconds: number | null | undefined): Date | null => (seconds === null || seconds === undefined ? null : new Date(seconds * 1000));
const idOf = (ref: z.infer<typeof idOrObject>): string => (typeof ref === "string" ? ref : ref.id);

/**
 * The subscription as MindRoom stores it. With several items, the highest tier wins (every item's
 * price must still resolve). Periods come from the items (current API versions; the earliest start
 * and the latest end), else from the top level (API versions before 2025-03-31.basil).
 */
export function mapSubscription(input: unknown, priceTiers: PriceTierMap): SubscriptionSnapshot {
  const sub = stripeSubscriptionSchema.parse(input);
  const first = sub.items.data[0];
  if (first === undefined) throw new Error(`subscription ${sub.id} has no items`);
  let best = { tier: tierOfPrice(first.price, priceTiers), priceId: priceIdOf(first.price) };
  for (const item of sub.items.data.slice(1)) {
    const tier = tierOfPrice(item.price, priceTiers);
    if (TIERS.indexOf(tier) > TIERS.indexOf(best.tier)) best = { tier, priceId: priceIdOf(item.price) };
  }
  const starts = sub.items.data.map((i) => i.current_period_start).filter((v): v is number => typeof v === "number");
  const ends = sub.items.data.map((i) => i.current_period_end).filter((v): v is number => typeof v === "number");
  return {
    stripeSubscriptionId: sub.id,
    customerId: idOf(sub.customer),
    priceId: best.priceId,
    tier: best.tier,
    status: sub.status,
    currentPeriodStart: toDate(starts.length > 0 ? Math.min(...starts) : sub.current_period_start),
    currentPeriodEnd: toDate(ends.length > 0 ? Math.max(...ends) : sub.current_period_end),
    cancelAtPeriodEnd: sub.cancel_at_period_end,
    canceledAt: toDate(sub.canceled_at),
    trialEndsAt: toDate(sub.trial_end),
  };
}

const priceIdOf = (price: StripePriceLike | string): string => (typeof price === "string" ? price : price.id);

export function mapCustomer(input: unknown): CustomerSnapshot {
  const c = stripeCustomerSchema.parse(input);
  return {
    customerId: c.id,
    email: c.email ? c.email.trim().toLowerCase() : null,
    fullName: c.name ?? null,
    companyName: c.metadata?.company_name ?? c.metadata?.company ?? null,
    deleted: c.deleted === true,
  };
}

/** The subscription an invoice belongs to: `parent.subscription_details` (current) or `subscription` (old). */
export function invoiceSubscriptionId(input: unknown): string | null {
  const inv = invoiceSchema.parse(input);
  const current = inv.parent?.subscription_details?.subscription;
  if (current) return idOf(current);
  return inv.subscription ? idOf(inv.subscription) : null;
}

export type EventKind = "customer" | "subscription" | "invoice" | "checkout" | "ignored";

/** Event types the controller acts on. Everything else is stored `ignored` and answered 200. */
export const HANDLED_EVENT_TYPES = [
  "customer.created",
  "customer.updated",
  "customer.deleted",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "customer.subscription.trial_will_end",
  "customer.subscription.pending_update_applied",
  "customer.subscription.pending_update_expired",
  "invoice.created",
  "invoice.finalized",
  "invoice.paid",
  "invoice.payment_succeeded",
  "invoice.payment_failed",
  "invoice.payment_action_required",
  "invoice.updated",
  "invoice.voided",
  "invoice.marked_uncollectible",
  "invoice.overdue",
  "checkout.session.completed",
] as const;
const HANDLED: ReadonlySet<string> = new Set(HANDLED_EVENT_TYPES);

export function classifyEventType(type: string): EventKind {
  if (!HANDLED.has(type)) return "ignored";
  if (type.startsWith("customer.subscription.")) return "subscription";
  if (type.startsWith("customer.")) return "customer";
  if (type.startsWith("invoice.")) return "invoice";
  return "checkout";
}

/** Metric label for an event type: only handled types by name, so cardinality stays bounded. */
export const eventTypeLabel = (type: string): string => (HANDLED.has(type) ? type : "other");

/** The inbox columns derived from an event: its object id and the customer it concerns. */
export function inboxKeys(event: StripeEventEnvelope): { objectId: string | null; customerId: string | null } {
  const object = event.data.object;
  const objectId = typeof object.id === "string" ? object.id : null;
  if (event.type.startsWith("customer.") && !event.type.startsWith("customer.subscription.")) {
    return { objectId, customerId: objectId };
  }
  const customer = object.customer;
  if (typeof customer === "string") return { objectId, customerId: customer };
  if (customer !== null && typeof customer === "object" && typeof (customer as { id?: unknown }).id === "string") {
    return { objectId, customerId: (customer as { id: string }).id };
  }
  return { objectId, customerId: null };
}

/**
 * Lifecycle rank, used only to break ties between two payloads with the same `created` second.
 * It follows Stripe's natural progression (incomplete → trialing → active → past_due → unpaid /
 * paused → canceled): the same-second pairs Stripe really sends (`created` incomplete + `updated`
 * active; `trial_will_end` + `updated`; `updated` past_due + `invoice.payment_failed`) move forward.
 */
const STATUS_RANK: Readonly<Record<SubscriptionStatus, number>> = {
  incomplete: 0,
  trialing: 1,
  active: 2,
  past_due: 3,
  unpaid: 4,
  paused: 5,
  canceled: 6,
  incomplete_expired: 6,
};

/**
 * Event types that say by themselves where they stand in a second, whatever the status in their
 * payload: a `resumed` (status active) follows the `paused` it undoes, and a `deleted` follows
 * everything. Ranks are on the STATUS_RANK scale times ten, so they fit between statuses.
 */
const EVENT_TYPE_RANK: Readonly<Record<string, number>> = {
  "customer.subscription.resumed": STATUS_RANK.paused * 10 + 5,
  "customer.subscription.deleted": 100,
};

/** Where a payload stands among the same-second payloads of one subscription. */
export function lifecycleRank(status: SubscriptionStatus, eventType?: string): number {
  return (eventType === undefined ? undefined : EVENT_TYPE_RANK[eventType]) ?? STATUS_RANK[status] * 10;
}

/**
 * The rank of the stored state when it was applied from a payload of the same second: the highest
 * rank among that second's applied events whose status it holds (the guard applies an event only
 * when it ranks at least as high as the stored state, so that is the one the row reflects).
 */
export function storedRank(status: SubscriptionStatus, sameSecondEvents: readonly { readonly type: string; readonly status: string | null }[]): number {
  const ranks = sameSecondEvents.filter((event) => event.status === status).map((event) => lifecycleRank(status, event.type));
  return Math.max(lifecycleRank(status), ...ranks);
}

/** Stripe never moves a subscription out of these. */
export const TERMINAL_STATUSES: readonly SubscriptionStatus[] = ["canceled", "incomplete_expired"];

export type OrderingDecision = "apply" | "stale" | "terminal";

/**
 * The payload-mode ordering guard (no API key). `stateAt` is the `created` of the event whose
 * payload was last applied (`subscriptions.stripe_state_at`).
 * 1. A terminal stored status is never left (Stripe guarantees it): a late `updated` cannot revive
 *    a canceled subscription.
 * 2. An older event than the stored state is stale.
 * 3. Same second: the incoming payload wins when its lifecycle rank (status, or what its event
 *    type says: see EVENT_TYPE_RANK) is at least the stored one, `stored.rank` when known (so,
 *    among equal ranks, the later-processed event wins: arrival order).
 * Limitation: with payloads only the truth cannot always be known (two same-second payloads of
 * equal rank that differ in tier or cancel fields resolve by arrival order). With an API key the
 * worker re-reads the subscription instead and this guard is not used.
 */
export function orderingDecision(
  stored: { readonly status: SubscriptionStatus; readonly stateAt: Date | null; readonly rank?: number } | null,
  incoming: { readonly status: SubscriptionStatus; readonly stateAt: Date; readonly eventType?: string },
): OrderingDecision {
  if (stored === null) return "apply";
  if (TERMINAL_STATUSES.includes(stored.status) && !TERMINAL_STATUSES.includes(incoming.status)) return "terminal";
  if (stored.stateAt === null) return "apply";
  const delta = incoming.stateAt.getTime() - stored.stateAt.getTime();
  if (delta !== 0) return delta > 0 ? "apply" : "stale";
  return lifecycleRank(incoming.status, incoming.eventType) >= (stored.rank ?? lifecycleRank(stored.status)) ? "apply" : "stale";
}

export type Change = { readonly old: string | boolean | null; readonly new: string | boolean | null };

/** Field-by-field changes (JSON-friendly, for the audit row); empty when the snapshot changes nothing. */
export function billingChanges(stored: StoredBilling | null, snap: SubscriptionSnapshot): Record<string, Change> {
  const pairs: Array<[string, string | boolean | Date | null | undefined, string | boolean | Date | null]> = [
    ["status", stored?.status, snap.status],
    ["tier", stored?.tier, snap.tier],
    ["stripe_price_id", stored?.priceId, snap.priceId],
    ["current_period_start", stored?.currentPeriodStart, snap.currentPeriodStart],
    ["current_period_end", stored?.currentPeriodEnd, snap.currentPeriodEnd],
    ["cancel_at_period_end", stored?.cancelAtPeriodEnd, snap.cancelAtPeriodEnd],
    ["canceled_at", stored?.canceledAt, snap.canceledAt],
    ["trial_ends_at", stored?.trialEndsAt, snap.trialEndsAt],
  ];
  const changes: Record<string, Change> = {};
  for (const [field, before, after] of pairs) {
    const old = plain(before);
    const next = plain(after);
    if (stored === null || old !== next) changes[field] = { old: stored === null ? null : old, new: next };
  }
  return changes;
}

const plain = (v: string | boolean | Date | null | undefined): string | boolean | null =>
  v instanceof Date ? v.toISOString() : (v ?? null);

/** Whether the inbox acts on events of a type in API mode: every handled type. */
export const actedOnWithApi = (type: string): boolean => classifyEventType(type) !== "ignored";

/**
 * The inbox row of an event, for the webhook and the catch-up alike (pure): `pending` when the
 * inbox acts on its type (`actedOn`, by default every handled type), else stored `ignored`.
 */
export function inboxRow(event: StripeEventEnvelope, payloadJson: string, actedOn: (type: string) => boolean = actedOnWithApi): NewStripeEvent {
  const keys = inboxKeys(event);
  return {
    id: event.id,
    type: event.type,
    objectId: keys.objectId,
    customerId: keys.customerId,
    created: new Date(event.created * 1000),
    apiVersion: event.api_version ?? null,
    livemode: event.livemode ?? null,
    payloadJson,
    status: actedOn(event.type) ? "pending" : "ignored",
  };
}
