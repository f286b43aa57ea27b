/**
 * Set-wise forms of billing.ts's writes, for the inbox worker's batches: one statement for many
 * customers or subscriptions instead of one each. billing.ts's one-at-a-time forms call these
 * with one row, so both write the same columns and audit entries. Rows go in as one JSON array (`jsonb_to_recordset`), so the statement and
 * its parameters are the same whatever the number of rows.
 *
 * They cover what is new: an account for a customer whose email no account has, a subscription
 * that is not stored, an instance for a subscription that has none. Deciding which rows those are
 * is the caller's (src/sources/stripe/apply-sets.ts); what is already there goes through
 * billing.ts one at a time. A row that is not new after all (another writer got there first)
 * fails the statement on a unique constraint, never overwrites.
 */
import type { BillingAudit, SubscriptionSnapshot } from "./billing-types.ts";
import type { Db } from "./sql.ts";

/** The accounts of the Stripe customers that have one (first customers and later ones alike). */
export async function accountIdsOfCustomers(sql: Db, customerIds: readonly string[]): Promise<Map<string, string>> {
  if (customerIds.length === 0) return new Map();
  const rows = await sql<{ stripe_customer_id: string; account_id: string }[]>`
    select stripe_customer_id, account_id from stripe_customers where stripe_customer_id = any(${customerIds as string[]}::text[])`;
  return new Map(rows.map((row) => [row.stripe_customer_id, row.account_id]));
}

/**
 * Takes the email locks of billing.ts's `upsertAccountFromCustomer` (held until the transaction
 * ends) for several emails, in one order, so two batches never wait on each other crosswise.
 */
export async function lockAccountEmails(sql: Db, emails: readonly string[]): Promise<void> {
  if (emails.length === 0) return;
  await sql`
    select pg_advisory_xact_lock(hashtext('mindroom_account_email:' || e.email))
    from (select distinct email from unnest(${emails as string[]}::text[]) as u(email) order by email) as e`;
}

/** The emails, among those given (lower case), that an account has, in any case. */
export async function accountEmailsTaken(sql: Db, emails: readonly string[]): Promise<Set<string>> {
  if (emails.length === 0) return new Set();
  const rows = await sql<{ email: string }[]>`select lower(email) as email from accounts where lower(email) = any(${emails as string[]}::text[])`;
  return new Set(rows.map((row) => row.email));
}

export interface NewAccount {
  readonly customerId: string;
  readonly email: string;
  readonly fullName: string | null;
  readonly companyName: string | null;
}

/** Inserts one account per new customer (each its first customer); returns customer id → account id. */
export async function insertAccounts(sql: Db, accounts: readonly NewAccount[]): Promise<Map<string, string>> {
  if (accounts.length === 0) return new Map();
  const rows = await sql<{ id: string; stripe_customer_id: string }[]>`
    insert into accounts (email, full_name, company_name, stripe_customer_id)
    select a.email, a.full_name, a.company_name, a.stripe_customer_id
    from jsonb_to_recordset(${json(accounts.map((a) => ({ email: a.email, full_name: a.fullName, company_name: a.companyName, stripe_customer_id: a.customerId })))}::text::jsonb)
      as a(email text, full_name text, company_name text, stripe_customer_id text)
    returning id, stripe_customer_id`;
  return new Map(rows.map((row) => [row.stripe_customer_id, row.id]));
}

export interface NewSubscription {
  readonly snap: SubscriptionSnapshot;
  readonly accountId: string;
  /** `created` of the event applied. */
  readonly stateAt: Date;
}

/** Inserts subscriptions that are not stored (their triggers run per row); returns Stripe id → id. */
export async function insertSubscriptions(sql: Db, subscriptions: readonly NewSubscription[]): Promise<Map<string, string>> {
  if (subscriptions.length === 0) return new Map();
  const rows = subscriptions.map(({ snap, accountId, stateAt }) => ({
    account_id: accountId,
    stripe_subscription_id: snap.stripeSubscriptionId,
    stripe_price_id: snap.priceId,
    tier: snap.tier,
    status: snap.status,
    trial_ends_at: snap.trialEndsAt,
    current_period_start: snap.currentPeriodStart,
    current_period_end: snap.currentPeriodEnd,
    cancel_at_period_end: snap.cancelAtPeriodEnd,
    canceled_at: snap.canceledAt,
    stripe_state_at: stateAt,
  }));
  const inserted = await sql<{ id: string; stripe_subscription_id: string }[]>`
    insert into subscriptions (account_id, stripe_subscription_id, stripe_price_id, tier, status,
      trial_ends_at, current_period_start, current_period_end, cancel_at_period_end, canceled_at,
      stripe_synced_at, stripe_state_at)
    select s.account_id, s.stripe_subscription_id, s.stripe_price_id, s.tier, s.status,
      s.trial_ends_at, s.current_period_start, s.current_period_end, s.cancel_at_period_end, s.canceled_at,
      now(), s.stripe_state_at
    from jsonb_to_recordset(${json(rows)}::text::jsonb) as s(
      account_id uuid, stripe_subscription_id text, stripe_price_id text, tier public.tier_name, status public.subscription_status,
      trial_ends_at timestamptz, current_period_start timestamptz, current_period_end timestamptz,
      cancel_at_period_end boolean, canceled_at timestamptz, stripe_state_at timestamptz)
    returning id, stripe_subscription_id`;
  return new Map(inserted.map((row) => [row.stripe_subscription_id, row.id]));
}

/** The Stripe subscription ids, among those given, that `subscriptions` holds. */
export async function storedSubscriptionIds(sql: Db, stripeSubscriptionIds: readonly string[]): Promise<Set<string>> {
  if (stripeSubscriptionIds.length === 0) return new Set();
  const rows = await sql<{ stripe_subscription_id: string }[]>`
    select stripe_subscription_id from subscriptions where stripe_subscription_id = any(${stripeSubscriptionIds as string[]}::text[])`;
  return new Set(rows.map((row) => row.stripe_subscription_id));
}

/**
 * `provision_instance` for each of the subscriptions, none of which has a live instance (the
 * caller checked, or inserted them in this transaction); returns subscription id → the new
 * instance's id.
 */
export async function provisionInstances(sql: Db, subscriptionIds: readonly string[]): Promise<Map<string, string | null>> {
  if (subscriptionIds.length === 0) return new Map();
  const rows = await sql<{ subscription_id: string; instance_id: string | null }[]>`
    select s.id::text as subscription_id, provision_instance(s.id, '{}'::jsonb)::text as instance_id
    from unnest(${subscriptionIds as string[]}::uuid[]) with ordinality as s(id, n)
    order by s.n`;
  return new Map(rows.map((row) => [row.subscription_id, row.instance_id]));
}

/** `auditBilling` for many rows. */
export async function auditBillingRows(sql: Db, rows: readonly BillingAudit[]): Promise<void> {
  if (rows.length === 0) return;
  const audit = rows.map((row) => ({ account_id: row.accountId, instance_id: row.instanceId ?? null, action: row.action, details: row.details }));
  await sql`
    insert into audit_logs (account_id, instance_id, action, action_category, details, actor)
    select r.account_id, r.instance_id, r.action, 'billing', r.details, 'stripe'
    from jsonb_to_recordset(${json(audit)}::text::jsonb) as r(account_id uuid, instance_id uuid, action text, details jsonb)`;
}

const json = (value: unknown): string => JSON.stringify(value);
