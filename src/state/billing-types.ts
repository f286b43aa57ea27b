/**
 * The shapes the billing repository writes from (billing.ts one at a time, billing-sets.ts
 * set-wise): snapshots of Stripe objects, the stored billing columns they are compared with, and
 * the audit rows. Types only, so both writers share them without importing each other's code.
 */
import type { SubscriptionStatus, Tier } from "../reconciler/types.ts";

/** What `subscriptions` should hold for one Stripe subscription. */
export interface SubscriptionSnapshot {
  readonly stripeSubscriptionId: string;
  readonly customerId: string;
  readonly priceId: string;
  readonly tier: Tier;
  readonly status: SubscriptionStatus;
  readonly currentPeriodStart: Date | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly canceledAt: Date | null;
  readonly trialEndsAt: Date | null;
}

/** What `accounts` should hold for one Stripe customer. */
export interface CustomerSnapshot {
  readonly customerId: string;
  readonly email: string | null;
  readonly fullName: string | null;
  readonly companyName: string | null;
  /** `customer.deleted` (or a retrieve answering `deleted: true`): the account is kept, see upsertAccountFromCustomer. */
  readonly deleted: boolean;
}

/** The billing columns of a stored subscription, as compared with a snapshot. */
export interface StoredBilling {
  readonly status: SubscriptionStatus;
  readonly tier: Tier;
  readonly priceId: string | null;
  readonly currentPeriodStart: Date | null;
  readonly currentPeriodEnd: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly canceledAt: Date | null;
  readonly trialEndsAt: Date | null;
}

/** Where a write came from, for the audit trail. */
export interface BillingSource {
  readonly via: "webhook-payload" | "stripe-api";
  readonly eventId: string | null;
}

/** One `billing` audit row: the account, the instance when there is one, what happened and its details. */
export interface BillingAudit {
  readonly accountId: string | null;
  readonly instanceId?: string | null;
  readonly action: string;
  readonly details: Record<string, unknown>;
}
