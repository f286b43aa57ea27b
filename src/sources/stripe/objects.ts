/**
 * Builders of Stripe-shaped objects (customer, price, subscription, invoice, event) in the shape of
 * the pinned API version (`STRIPE_API_VERSION`: periods on subscription items, `invoice.parent`).
 * Used by `stripe send` (src/sources/stripe/cli.ts) and by the fake Stripe of the tests, so both
 * emit exactly what the daemon must parse. Pure: ids and times are passed in.
 */
import type { SubscriptionStatus, Tier } from "../../reconciler/types.ts";

/** The API version of stripe-node 23 (what its client sends as `Stripe-Version`). */
export const STRIPE_API_VERSION = "2026-10-28.endive";

export type PaidTier = Exclude<Tier, "free">;
export const PAID_TIERS: readonly PaidTier[] = ["starter", "professional", "enterprise"];

/** Monthly amount in cents per paid tier. */
export const TIER_AMOUNTS: Readonly<Record<PaidTier, number>> = { starter: 2000, professional: 20000, enterprise: 100000 };

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function customerObject(c: { id: string; email: string | null; name: string | null; created: number; metadata?: Record<string, string> }): JsonObject {
  return {
    id: c.id,
    object: "customer",
    address: null,
    balance: 0,
    created: c.created,
    currency: "usd",
    default_source: null,
    delinquent: false,
    description: null,
    email: c.email,
    invoice_prefix: c.id.slice(4, 12).toUpperCase(),
    invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode: false,
    metadata: { ...(c.metadata ?? {}) },
    name: c.name,
    phone: null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: "none",
    test_clock: null,
  };
}

export const deletedCustomerObject = (id: string): JsonObject => ({ id, object: "customer", deleted: true });

/** A monthly price whose tier is named twice: `lookup_key` `<tier>_monthly` and `metadata.tier`. */
export function priceObject(p: { id: string; tier: PaidTier; product: string; created: number }): JsonObject {
  const amount = TIER_AMOUNTS[p.tier];
  return {
    id: p.id,
    object: "price",
    active: true,
    billing_scheme: "per_unit",
    created: p.created,
    currency: "usd",
    custom_unit_amount: null,
    livemode: false,
    lookup_key: `${p.tier}_monthly`,
    metadata: { tier: p.tier },
    nickname: `MindRoom ${p.tier} monthly`,
    product: p.product,
    recurring: { interval: "month", interval_count: 1, meter: null, usage_type: "licensed" },
    tax_behavior: "unspecified",
    tiers_mode: null,
    transform_quantity: null,
    type: "recurring",
    unit_amount: amount,
    unit_amount_decimal: String(amount),
  };
}

export interface SubscriptionFields {
  readonly id: string;
  readonly itemId: string;
  readonly customer: string;
  readonly price: JsonObject;
  readonly status: SubscriptionStatus;
  readonly created: number;
  readonly currentPeriodStart: number;
  readonly currentPeriodEnd: number;
  readonly cancelAtPeriodEnd: boolean;
  readonly cancelAt: number | null;
  readonly canceledAt: number | null;
  readonly endedAt: number | null;
  readonly trialStart: number | null;
  readonly trialEnd: number | null;
  readonly latestInvoice: string | null;
  readonly metadata?: Record<string, string>;
}

/** Current API shape: no top-level `current_period_*` (removed in 2025-03-31.basil), they are on the item. */
export function subscriptionObject(s: SubscriptionFields): JsonObject {
  return {
    id: s.id,
    object: "subscription",
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: s.trialEnd ?? s.created,
    billing_cycle_anchor_config: null,
    cancel_at: s.cancelAt,
    cancel_at_period_end: s.cancelAtPeriodEnd,
    canceled_at: s.canceledAt,
    cancellation_details: { comment: null, feedback: null, reason: s.canceledAt === null ? null : "cancellation_requested" },
    collection_method: "charge_automatically",
    created: s.created,
    currency: "usd",
    customer: s.customer,
    days_until_due: null,
    default_payment_method: null,
    description: null,
    discounts: [],
    ended_at: s.endedAt,
    items: {
      object: "list",
      data: [
        {
          id: s.itemId,
          object: "subscription_item",
          created: s.created,
          current_period_end: s.currentPeriodEnd,
          current_period_start: s.currentPeriodStart,
          discounts: [],
          metadata: {},
          price: s.price,
          quantity: 1,
          subscription: s.id,
          tax_rates: [],
        },
      ],
      has_more: false,
      total_count: 1,
      url: `/v1/subscription_items?subscription=${s.id}`,
    },
    latest_invoice: s.latestInvoice,
    livemode: false,
    metadata: { ...(s.metadata ?? {}) },
    pause_collection: null,
    start_date: s.created,
    status: s.status,
    test_clock: null,
    trial_end: s.trialEnd,
    trial_settings: { end_behavior: { missing_payment_method: "create_invoice" } },
    trial_start: s.trialStart,
  };
}

export type InvoiceStatus = "draft" | "open" | "paid" | "uncollectible" | "void";

/** Current API shape: the subscription is under `parent.subscription_details` (no `invoice.subscription`). */
export function invoiceObject(i: {
  id: string;
  customer: string;
  subscription: string;
  status: InvoiceStatus;
  amount: number;
  created: number;
  periodStart: number;
  periodEnd: number;
  attemptCount: number;
  billingReason: "subscription_create" | "subscription_cycle" | "subscription_update";
}): JsonObject {
  const paid = i.status === "paid";
  return {
    id: i.id,
    object: "invoice",
    amount_due: i.amount,
    amount_paid: paid ? i.amount : 0,
    amount_remaining: paid ? 0 : i.amount,
    attempt_count: i.attemptCount,
    attempted: i.attemptCount > 0,
    auto_advance: !paid,
    billing_reason: i.billingReason,
    collection_method: "charge_automatically",
    created: i.created,
    currency: "usd",
    customer: i.customer,
    hosted_invoice_url: null,
    livemode: false,
    parent: { quote_details: null, subscription_details: { metadata: {}, subscription: i.subscription }, type: "subscription_details" },
    period_end: i.periodEnd,
    period_start: i.periodStart,
    status: i.status,
    status_transitions: { finalized_at: i.status === "draft" ? null : i.created, paid_at: paid ? i.created : null, voided_at: null },
    total: i.amount,
  };
}

export function eventObject(e: { id: string; type: string; created: number; object: JsonObject; previousAttributes?: JsonObject | null }): JsonObject {
  const data: JsonObject = { object: e.object };
  if (e.previousAttributes) data.previous_attributes = e.previousAttributes;
  return {
    id: e.id,
    object: "event",
    api_version: STRIPE_API_VERSION,
    created: e.created,
    data,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type: e.type,
  };
}
