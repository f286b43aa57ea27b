/**
 * Two Stripe customers with one email (issue 18). The rule: one account per email. A person who
 * checks out twice has one account holding the subscriptions of both customers, each with its
 * instance; nothing is dead-lettered. Linking by email still needs a confirmed email (issue 14).
 */
import { beforeEach, describe, expect, test } from "vitest";

import { StripeInbox } from "../../src/sources/stripe/inbox.ts";
import { FakeClock, type FakeStripe, startFakeStripe } from "../fake-stripe/index.ts";
import type { TestDatabase } from "../helpers/db.ts";
import { inboxDatabasePerFile,ingest, newMetrics, silentLogger } from "./helpers.ts";

let fake: FakeStripe;

let db: TestDatabase;
inboxDatabasePerFile((created) => (db = created));
beforeEach(async () => {
  fake = await startFakeStripe({ clock: new FakeClock() });
  return () => fake.close();
});

function worker(api: boolean): StripeInbox {
  return new StripeInbox({ sql: db.sql, stripe: api ? fake.client() : null, priceTiers: {}, metrics: newMetrics().metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 } });
}

async function eventsNotProcessed(): Promise<{ id: string; status: string; last_error: string | null }[]> {
  return db.sql`select id, status, last_error from stripe_events where status not in ('processed', 'ignored')`;
}

describe.each([
  ["API mode", true],
  ["payload mode", false],
])("%s: two customers, one email", (_mode, api) => {
  test("one account holds both customers' subscriptions and instances; nothing dead-lettered", async () => {
    const email = `twice-${api ? "api" : "payload"}@example.com`;
    const { sim } = fake;
    const first = sim.createCustomer({ email, name: "First Checkout" });
    const firstSub = sim.createSubscription({ customer: first, tier: "starter" });
    const second = sim.createCustomer({ email: email.toUpperCase(), name: "Second Checkout" });
    const secondSub = sim.createSubscription({ customer: second, tier: "professional" });
    await ingest(db.sql, sim.events);
    const inbox = worker(api);
    await inbox.processPendingOnce();
    expect(await eventsNotProcessed()).toEqual([]);
    const [retried] = await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events where attempts > 0`;
    expect(retried!.n, "no event failed on the way (the two customers raced for one email)").toBe(0);

    const accounts = await db.sql<{ id: string; email: string; full_name: string; stripe_customer_id: string }[]>`
      select id, email, full_name, stripe_customer_id from accounts where lower(email) = ${email}`;
    expect(accounts).toHaveLength(1);
    const account = accounts[0]!;
    // The account's first customer is whichever was applied first (customers run in parallel);
    // the account follows that one's profile, and the other joined it.
    const names: Record<string, string> = { [first]: "First Checkout", [second]: "Second Checkout" };
    expect([first, second]).toContain(account.stripe_customer_id);
    expect(account).toMatchObject({ email, full_name: names[account.stripe_customer_id] });
    const other = account.stripe_customer_id === first ? second : first;
    const customers = await db.sql<{ stripe_customer_id: string }[]>`
      select stripe_customer_id from stripe_customers where account_id = ${account.id} order by stripe_customer_id`;
    expect(customers.map((row) => row.stripe_customer_id)).toEqual([first, second].sort());
    const subs = await db.sql<{ stripe_subscription_id: string; tier: string; instances: number }[]>`
      select s.stripe_subscription_id, s.tier::text as tier, (select count(*)::int from instances i where i.subscription_id = s.id) as instances
      from subscriptions s where s.account_id = ${account.id} order by s.tier::text`;
    expect(subs).toEqual([
      { stripe_subscription_id: secondSub, tier: "professional", instances: 1 },
      { stripe_subscription_id: firstSub, tier: "starter", instances: 1 },
    ]);
    const linked = await db.sql`select details->>'first_customer' as first from audit_logs where account_id = ${account.id} and action = 'account.linked'`;
    expect(linked).toEqual([{ first: account.stripe_customer_id }]);

    // The other customer's profile does not rewrite the account; its deletion keeps everything.
    sim.updateCustomer(other, { name: "Renamed Other" });
    sim.deleteCustomer(other);
    await ingest(db.sql, sim.events);
    await inbox.processPendingOnce();
    expect(await eventsNotProcessed()).toEqual([]);
    const [after] = await db.sql`select full_name from accounts where id = ${account.id}`;
    expect(after).toEqual({ full_name: names[account.stripe_customer_id] });
    const deleted = await db.sql`select details->>'stripe_customer_id' as customer from audit_logs where account_id = ${account.id} and action = 'customer.deleted'`;
    expect(deleted).toEqual([{ customer: other }]);
    const [subsAfter] = await db.sql<{ n: number }[]>`select count(*)::int as n from subscriptions where account_id = ${account.id}`;
    expect(subsAfter!.n).toBe(2);
  });
});

test("a second customer with the email of an unconfirmed sign-up is not linked until the email is confirmed", async () => {
  const email = "unconfirmed-twice@example.com";
  const [user] = await db.sql<{ id: string }[]>`insert into auth.users (email) values (${email}) returning id`;
  // An account for the sign-up, as one created before the confirmation rule (issue 14).
  await db.sql`insert into accounts (id, email) values (${user!.id}, ${email}) on conflict (id) do nothing`;
  const { sim } = fake;
  const customer = sim.createCustomer({ email });
  await ingest(db.sql, sim.events);
  const inbox = worker(false);
  await inbox.processPendingOnce();
  const [pending] = await db.sql<{ status: string; last_error: string }[]>`select status, last_error from stripe_events where customer_id = ${customer}`;
  expect(pending?.status).toBe("pending");
  expect(pending?.last_error).toMatch(/not confirmed/);
  expect(await db.sql`select 1 from stripe_customers where stripe_customer_id = ${customer}`).toHaveLength(0);
  await db.sql`update auth.users set email_confirmed_at = now() where id = ${user!.id}`;
  await db.sql`update stripe_events set next_attempt_at = now() where customer_id = ${customer}`;
  await inbox.processPendingOnce();
  expect(await db.sql`select account_id from stripe_customers where stripe_customer_id = ${customer}`).toEqual([{ account_id: user!.id }]);
});
