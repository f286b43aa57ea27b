/**
 * Billing repository: writes `accounts` and `subscriptions` from Stripe snapshots (mapped by the
 * pure src/sources/stripe/map.ts; whether and what to write for a subscription is decided by
 * src/sources/stripe/subscriptions.ts). Only the controller writes these columns; triggers (0003) copy
 * limits and features when the tier changes, maintain `past_due_since`, audit status changes as
 * `subscription_status_changed` and `pg_notify('mindroom_reconcile', id)`.
 *
 * Every function takes the caller's `sql` (usually the inbox worker's transaction). Each actual
 * change writes one `billing` audit row with the old → new values; a snapshot that changes nothing
 * writes no audit row (only `stripe_synced_at`).
 */
import type { SubscriptionStatus, Tier } from "../reconciler/types.ts";
import { auditBillingRows, insertAccounts, insertSubscriptions, provisionInstances } from "./billing-sets.ts";
import type { BillingAudit, BillingSource, CustomerSnapshot, StoredBilling, SubscriptionSnapshot } from "./billing-types.ts";
import type { Db } from "./sql.ts";

export type { BillingAudit, BillingSource, CustomerSnapshot, StoredBilling, SubscriptionSnapshot } from "./billing-types.ts";

/** Placeholder for a Stripe customer without an email (`accounts.email` is required and unique). */
export const placeholderEmail = (customerId: string): string => `${customerId.toLowerCase()}@stripe-customer.invalid`;

export async function auditBilling(sql: Db, row: BillingAudit): Promise<void> {
  await auditBillingRows(sql, [row]);
}

/** The account of a Stripe customer (its first customer or any later one: `stripe_customers`). */
export async function findAccountIdByCustomer(sql: Db, customerId: string): Promise<string | null> {
  const rows = await sql<{ account_id: string }[]>`select account_id from stripe_customers where stripe_customer_id = ${customerId}`;
  return rows[0]?.account_id ?? null;
}

export type AccountChange = "created" | "linked" | "updated" | "unchanged" | "deleted" | "unknown";

type AccountRow = { id: string; email: string; full_name: string | null; company_name: string | null; stripe_customer_id: string | null };

/**
 * Upserts the account of a Stripe customer. The rule (migration 0009): one account per email.
 * A known customer (`stripe_customers`) keeps its account. A new customer whose email belongs to
 * an account joins that account (its first customer, or another one: a person who checked out
 * twice has one account with the subscriptions of both), unless the account is a sign-up whose
 * email is not confirmed (pre-claiming: issue 14); else a new account. The account's profile
 * follows its first customer only. `customer.deleted` deletes nothing (the account, its
 * subscriptions and instances stay; Stripe cancels the subscriptions itself and those events
 * drive teardown): it is audited once per customer. Stripe's name fields fill or replace local
 * ones only when Stripe has a value. An email already used by another account is kept unchanged
 * (logged in the audit row) rather than failing every later event of this customer.
 * Throws when a new customer's email belongs to an unconfirmed sign-up.
 */
export async function upsertAccountFromCustomer(sql: Db, c: CustomerSnapshot, source: BillingSource): Promise<{ accountId: string | null; change: AccountChange }> {
  const byCustomer = await sql<AccountRow[]>`
    select a.id, a.email, a.full_name, a.company_name, a.stripe_customer_id
    from stripe_customers c join accounts a on a.id = c.account_id
    where c.stripe_customer_id = ${c.customerId} for update of a`;
  const existing = byCustomer[0];
  if (existing !== undefined && existing.stripe_customer_id === c.customerId) return updateLinkedAccount(sql, existing, c, source);
  if (existing !== undefined) return otherCustomerOfAccount(sql, existing, c, source);
  if (c.deleted) return { accountId: null, change: "unknown" };
  const email = c.email ?? placeholderEmail(c.customerId);
  // Two new customers with one email are applied one after the other (the inbox runs customers
  // in parallel): the second then finds the first's account instead of a unique violation.
  await sql`select pg_advisory_xact_lock(hashtext(${`mindroom_account_email:${email}`}))`;
  const byEmail = await sql<(AccountRow & { trusted: boolean })[]>`
    select id, email, full_name, company_name, stripe_customer_id, public.account_email_trusted(id) as trusted
    from accounts where lower(email) = ${email} for update`;
  const match = byEmail[0];
  if (match !== undefined) {
    if (!match.trusted) {
      // Someone signed up with this email and never confirmed it: linking would hand them the
      // customer's subscription. The event is retried, and links once the email is confirmed.
      throw new Error(`customer ${c.customerId}: email belongs to account ${match.id}, a sign-up whose email is not confirmed; linking waits for the confirmation`);
    }
    if (match.stripe_customer_id !== null) {
      await sql`insert into stripe_customers (stripe_customer_id, account_id) values (${c.customerId}, ${match.id})`;
      await auditBilling(sql, { accountId: match.id, action: "account.linked", details: { stripe_customer_id: c.customerId, first_customer: match.stripe_customer_id, ...sourceDetails(source) } });
      return { accountId: match.id, change: "linked" };
    }
    await sql`
      update accounts set stripe_customer_id = ${c.customerId},
        full_name = coalesce(full_name, ${c.fullName}), company_name = coalesce(company_name, ${c.companyName})
      where id = ${match.id}`;
    await auditBilling(sql, { accountId: match.id, action: "account.linked", details: { stripe_customer_id: c.customerId, ...sourceDetails(source) } });
    return { accountId: match.id, change: "linked" };
  }
  const inserted = await insertAccounts(sql, [{ customerId: c.customerId, email, fullName: c.fullName, companyName: c.companyName }]);
  const accountId = inserted.get(c.customerId)!;
  await auditBilling(sql, accountCreatedAudit(accountId, c.customerId, email, source));
  return { accountId, change: "created" };
}

/** The audit row of an account created for a new Stripe customer. */
export const accountCreatedAudit = (accountId: string, customerId: string, email: string, source: BillingSource): BillingAudit => ({
  accountId,
  action: "account.created",
  details: { stripe_customer_id: customerId, email, ...sourceDetails(source) },
});

/** `customer.deleted` keeps everything and is audited once per customer. */
async function auditCustomerDeleted(sql: Db, accountId: string, c: CustomerSnapshot, source: BillingSource): Promise<{ accountId: string; change: AccountChange }> {
  const seen = await sql`
    select 1 from audit_logs where account_id = ${accountId} and action = 'customer.deleted' and details->>'stripe_customer_id' = ${c.customerId} limit 1`;
  if (seen.length === 0) {
    await auditBilling(sql, { accountId, action: "customer.deleted", details: { stripe_customer_id: c.customerId, kept: true, ...sourceDetails(source) } });
  }
  return { accountId, change: "deleted" };
}

/** A later customer of an account: its subscriptions are the account's; its profile is not. */
async function otherCustomerOfAccount(sql: Db, row: AccountRow, c: CustomerSnapshot, source: BillingSource): Promise<{ accountId: string; change: AccountChange }> {
  if (c.deleted) return auditCustomerDeleted(sql, row.id, c, source);
  return { accountId: row.id, change: "unchanged" };
}

async function updateLinkedAccount(sql: Db, row: AccountRow, c: CustomerSnapshot, source: BillingSource): Promise<{ accountId: string; change: AccountChange }> {
  if (c.deleted) return auditCustomerDeleted(sql, row.id, c, source);
  let email = c.email && c.email !== row.email.toLowerCase() ? c.email : row.email;
  const changes: Record<string, { old: string | null; new: string | null }> = {};
  if (email !== row.email) {
    const taken = await sql`select 1 from accounts where lower(email) = ${email} and id <> ${row.id}`;
    if (taken.length > 0) {
      changes.email_conflict = { old: row.email, new: email };
      email = row.email;
    } else {
      changes.email = { old: row.email, new: email };
    }
  }
  const fullName = c.fullName ?? row.full_name;
  const companyName = c.companyName ?? row.company_name;
  if (fullName !== row.full_name) changes.full_name = { old: row.full_name, new: fullName };
  if (companyName !== row.company_name) changes.company_name = { old: row.company_name, new: companyName };
  if (Object.keys(changes).length === 0) return { accountId: row.id, change: "unchanged" };
  await sql`update accounts set email = ${email}, full_name = ${fullName}, company_name = ${companyName} where id = ${row.id}`;
  await auditBilling(sql, { accountId: row.id, action: "account.updated", details: { stripe_customer_id: c.customerId, changes, ...sourceDetails(source) } });
  return { accountId: row.id, change: "updated" };
}

export const sourceDetails = (source: BillingSource): Record<string, unknown> => ({ via: source.via, event_id: source.eventId });

/** A stored subscription: its id, account, ordering state and billing columns. */
export interface LockedSubscription {
  readonly id: string;
  readonly accountId: string;
  /** `created` of the event or snapshot last applied. */
  readonly stateAt: Date | null;
  readonly billing: StoredBilling;
}

type SubscriptionRow = {
  id: string;
  account_id: string;
  status: SubscriptionStatus;
  tier: Tier;
  stripe_price_id: string | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  cancel_at_period_end: boolean;
  canceled_at: Date | null;
  trial_ends_at: Date | null;
  stripe_state_at: Date | null;
};

/** The subscription row of a Stripe subscription, locked until the transaction ends, or undefined. */
export async function lockSubscription(sql: Db, stripeSubscriptionId: string): Promise<LockedSubscription | undefined> {
  const [row] = await sql<SubscriptionRow[]>`
    select id, account_id, status, tier, stripe_price_id, current_period_start, current_period_end,
           cancel_at_period_end, canceled_at, trial_ends_at, stripe_state_at
    from subscriptions where stripe_subscription_id = ${stripeSubscriptionId} for update`;
  return row && { id: row.id, accountId: row.account_id, stateAt: row.stripe_state_at, billing: storedBilling(row) };
}

const storedBilling = (row: SubscriptionRow): StoredBilling => ({
  status: row.status,
  tier: row.tier,
  priceId: row.stripe_price_id,
  currentPeriodStart: row.current_period_start,
  currentPeriodEnd: row.current_period_end,
  cancelAtPeriodEnd: row.cancel_at_period_end,
  canceledAt: row.canceled_at,
  trialEndsAt: row.trial_ends_at,
});

/** What a write records besides the snapshot. */
export interface SubscriptionWrite {
  readonly accountId: string;
  /** Payloads: the event's `created`; API snapshots: the time of the fetch. */
  readonly stateAt: Date;
  readonly source: BillingSource;
}

export async function insertSubscription(sql: Db, snap: SubscriptionSnapshot, options: SubscriptionWrite): Promise<string> {
  const inserted = await insertSubscriptions(sql, [{ snap, accountId: options.accountId, stateAt: options.stateAt }]);
  return inserted.get(snap.stripeSubscriptionId)!;
}

/** `stripe_state_at` only moves forward, so a snapshot never makes the guard accept older payloads. */
export async function updateSubscription(sql: Db, id: string, snap: SubscriptionSnapshot, options: SubscriptionWrite, changed: boolean): Promise<void> {
  if (!changed) {
    await sql`
      update subscriptions set stripe_synced_at = now(),
        stripe_state_at = greatest(coalesce(stripe_state_at, ${options.stateAt}), ${options.stateAt})
      where id = ${id}`;
    return;
  }
  await sql`
    update subscriptions set
      stripe_price_id = ${snap.priceId}, tier = ${snap.tier}, status = ${snap.status},
      trial_ends_at = ${snap.trialEndsAt}, current_period_start = ${snap.currentPeriodStart},
      current_period_end = ${snap.currentPeriodEnd}, cancel_at_period_end = ${snap.cancelAtPeriodEnd},
      canceled_at = ${snap.canceledAt}, stripe_synced_at = now(),
      stripe_state_at = greatest(coalesce(stripe_state_at, ${options.stateAt}), ${options.stateAt})
    where id = ${id}`;
}

const PROVISIONING_STATUSES: readonly SubscriptionStatus[] = ["trialing", "active"];

/** `provision_instance` for a trialing/active subscription with no live instance; returns the new id. */
export async function ensureInstance(sql: Db, subscriptionId: string, status: SubscriptionStatus, options: SubscriptionWrite): Promise<string | null> {
  if (!wantsInstance(status)) return null;
  const live = await sql`select 1 from instances where subscription_id = ${subscriptionId} and status <> 'deprovisioned' limit 1`;
  if (live.length > 0) return null;
  const instanceId = (await provisionInstances(sql, [subscriptionId])).get(subscriptionId) ?? null;
  await auditBilling(sql, provisionRequestedAudit(subscriptionId, status, instanceId, options));
  return instanceId;
}

/** Whether a subscription in this status should have a live instance. */
export const wantsInstance = (status: SubscriptionStatus): boolean => PROVISIONING_STATUSES.includes(status);

/** The audit row of an instance requested for a trialing or active subscription. */
export const provisionRequestedAudit = (subscriptionId: string, status: SubscriptionStatus, instanceId: string | null, options: Omit<SubscriptionWrite, "stateAt">): BillingAudit => ({
  accountId: options.accountId,
  instanceId,
  action: "instance.provision_requested",
  details: { subscription_id: subscriptionId, status, ...sourceDetails(options.source) },
});

/** The Stripe subscription ids of one customer that `subscriptions` holds. */
export async function subscriptionIdsOfCustomer(sql: Db, customerId: string): Promise<string[]> {
  const rows = await sql<{ stripe_subscription_id: string }[]>`
    select s.stripe_subscription_id from subscriptions s join accounts a on a.id = s.account_id
    where a.stripe_customer_id = ${customerId} and s.stripe_subscription_id is not null`;
  return rows.map((r) => r.stripe_subscription_id);
}
