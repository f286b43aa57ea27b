/**
 * Issue 11 on plain Postgres and on a Supabase-shaped project: an account is linked to the person
 * who signs in with its (confirmed) email, whichever arrives first, so Row Level Security shows
 * them everything they pay for; another user with the email in another case, or an unconfirmed
 * one, sees nothing.
 */
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { upsertAccountFromCustomer } from "../../src/state/billing.ts";
import { createTestDatabase, FLAVORS, type TestDatabase } from "../helpers/db.ts";
import { asRole, countRows } from "./support.ts";

const SOURCE = { via: "webhook-payload", eventId: null } as const;

/** What a signed-in user sees through RLS: their account, subscriptions, instances, backups. */
async function visibleTo(sql: Sql, userId: string): Promise<{ accounts: number; subscriptions: number; instances: number; backups: number; audit: number }> {
  return asRole(sql, "authenticated", userId, async (tx) => {
    const [row] = await tx<{ accounts: number; subscriptions: number; instances: number; backups: number; audit: number }[]>`
      select (select count(*)::int from public.accounts) as accounts,
             (select count(*)::int from public.subscriptions) as subscriptions,
             (select count(*)::int from public.instances) as instances,
             (select count(*)::int from public.instance_backups) as backups,
             (select count(*)::int from public.audit_logs) as audit`;
    return row!;
  });
}

/** A customer who paid through Stripe first: an account with no user, a subscription, an instance and a backup. */
async function stripeFirst(sql: Sql, email: string): Promise<{ accountId: string; subscriptionId: string; instanceId: string; customerId: string }> {
  const customerId = `cus_${crypto.randomUUID().slice(0, 10)}`;
  const { accountId } = await sql.begin((tx) => upsertAccountFromCustomer(tx, { customerId, email, fullName: "Ada", companyName: null, deleted: false }, SOURCE));
  const [sub] = await sql<{ id: string }[]>`
    insert into subscriptions (account_id, tier, status, stripe_subscription_id) values (${accountId!}, 'starter', 'active', ${`sub_${customerId}`}) returning id`;
  const subdomain = `l${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const [instance] = await sql<{ id: string }[]>`
    insert into instances (subscription_id, subdomain, status) values (${sub!.id}, ${subdomain}, 'running') returning id`;
  await sql`insert into instance_backups (instance_id) values (${instance!.id})`;
  return { accountId: accountId!, subscriptionId: sub!.id, instanceId: instance!.id, customerId };
}

async function signUp(sql: Sql, email: string, confirmed: boolean): Promise<string> {
  const [user] = await sql<{ id: string }[]>`
    insert into auth.users (email, email_confirmed_at) values (${email}, ${confirmed ? new Date() : null}) returning id`;
  return user!.id;
}

const unique = (local: string) => `${local}-${crypto.randomUUID().slice(0, 8)}@example.com`;

describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
  });

  afterAll(async () => {
    await db?.drop();
  });

  test("Stripe first, then sign-up: the account is re-keyed to the user, every row follows, and RLS shows it all", async () => {
    const email = unique("ada");
    const paid = await stripeFirst(db.sql, email);
    const userId = await signUp(db.sql, email.toUpperCase(), true);
    expect(userId).not.toBe(paid.accountId);
    expect(await visibleTo(db.sql, userId)).toMatchObject({ accounts: 1, subscriptions: 1, instances: 1, backups: 1 });
    expect((await visibleTo(db.sql, userId)).audit).toBeGreaterThan(0);
    expect(await countRows(db.sql, "accounts", `id = '${paid.accountId}'`)).toBe(0);
    expect(await countRows(db.sql, "stripe_customers", `account_id = '${userId}' and stripe_customer_id = '${paid.customerId}'`)).toBe(1);
    expect(await countRows(db.sql, "audit_logs", `account_id = '${userId}' and action = 'account.linked'`)).toBe(1);
    // The next Stripe event for that customer lands on the same, linked account.
    const again = await db.sql.begin((tx) => upsertAccountFromCustomer(tx, { customerId: paid.customerId, email, fullName: "Ada", companyName: null, deleted: false }, SOURCE));
    expect(again.accountId).toBe(userId);
  });

  test("sign-up first, then Stripe: the customer's subscription is created on the user's account", async () => {
    const email = unique("grace");
    const userId = await signUp(db.sql, email, true);
    const customerId = `cus_${crypto.randomUUID().slice(0, 10)}`;
    const linked = await db.sql.begin((tx) => upsertAccountFromCustomer(tx, { customerId, email: email.toLowerCase(), fullName: null, companyName: null, deleted: false }, SOURCE));
    expect(linked).toEqual({ accountId: userId, change: "linked" });
    await db.sql`insert into subscriptions (account_id, tier, status) values (${linked.accountId!}, 'starter', 'active')`;
    expect(await visibleTo(db.sql, userId)).toMatchObject({ accounts: 1, subscriptions: 1 });
  });

  test("two users with one email in different cases: the first confirmed one gets the account, the second sees nothing", async () => {
    const email = unique("Linus");
    const paid = await stripeFirst(db.sql, email.toLowerCase());
    const first = await signUp(db.sql, email, true);
    const second = await signUp(db.sql, email.toLowerCase() === email ? email.toUpperCase() : email.toLowerCase(), true);
    expect(await visibleTo(db.sql, first)).toMatchObject({ accounts: 1, subscriptions: 1, instances: 1, backups: 1 });
    expect(await visibleTo(db.sql, second)).toEqual({ accounts: 0, subscriptions: 0, instances: 0, backups: 0, audit: 0 });
    expect(await countRows(db.sql, "accounts", `lower(email) = lower('${email}')`)).toBe(1);
    expect(await countRows(db.sql, "accounts", `id = '${paid.accountId}'`)).toBe(0);
  });

  test("an unverified user never links; confirming the email does", async () => {
    const email = unique("mallory");
    const paid = await stripeFirst(db.sql, email);
    const userId = await signUp(db.sql, email, false);
    expect(await visibleTo(db.sql, userId)).toEqual({ accounts: 0, subscriptions: 0, instances: 0, backups: 0, audit: 0 });
    expect(await countRows(db.sql, "accounts", `id = '${paid.accountId}'`)).toBe(1);
    await db.sql`update auth.users set email_confirmed_at = now() where id = ${userId}`;
    expect(await visibleTo(db.sql, userId)).toMatchObject({ accounts: 1, subscriptions: 1, instances: 1, backups: 1 });
  });

  test("an account that already has a user is never taken over by a later sign-up", async () => {
    const email = unique("owner");
    const owner = await signUp(db.sql, email, true);
    const [other] = await db.sql<{ id: string }[]>`
      insert into auth.users (email, email_confirmed_at) values (${email.toUpperCase()}, null) returning id`;
    await db.sql`update auth.users set email_confirmed_at = now() where id = ${other!.id}`;
    expect(await countRows(db.sql, "accounts", `id = '${owner}'`)).toBe(1);
    expect((await visibleTo(db.sql, other!.id)).accounts).toBe(0);
  });
});
