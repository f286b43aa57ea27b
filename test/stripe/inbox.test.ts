import { beforeEach, describe, expect, test } from "vitest";

import { StripeInbox, type StripeInboxOptions } from "../../src/sources/stripe/inbox.ts";
import { eventObject, priceObject, subscriptionObject } from "../../src/sources/stripe/objects.ts";
import { inboxSummary } from "../../src/state/stripe-events.ts";
import { FakeClock, type FakeStripe, startFakeStripe } from "../fake-stripe/index.ts";
import type { TestDatabase } from "../helpers/db.ts";
import { counterValue, inboxDatabasePerFile,ingest, newMetrics, silentLogger, subscriptionRow } from "./helpers.ts";

let fake: FakeStripe;
let clock: FakeClock;

let db: TestDatabase;
inboxDatabasePerFile((created) => (db = created));
beforeEach(async () => {
  clock = new FakeClock();
  fake = await startFakeStripe({ clock });
  return () => fake.close();
});

function inbox(api: boolean, extra: Partial<StripeInboxOptions> = {}): { inbox: StripeInbox; registry: ReturnType<typeof newMetrics>["registry"] } {
  const { registry, metrics } = newMetrics();
  const created = new StripeInbox({ sql: db.sql, stripe: api ? fake.client() : null, priceTiers: {}, metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 }, ...extra });
  return { inbox: created, registry };
}

const eventStatus = async (id: string): Promise<{ status: string; attempts: number; last_error: string | null } | undefined> =>
  (await db.sql<{ status: string; attempts: number; last_error: string | null }[]>`select status, attempts, last_error from stripe_events where id = ${id}`)[0];

const billingAudit = async (stripeSub: string): Promise<number> =>
  (await db.sql<{ n: number }[]>`select count(*)::int as n from audit_logs where action_category = 'billing' and details->>'stripe_subscription_id' = ${stripeSub} and action like 'subscription.%'`)[0]!.n;

describe("API mode: every event re-reads the customer", () => {
  test("a new trial creates the account, the subscription and its instance; audited once", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "trial@example.com", name: "Tria" });
    const sub = sim.createSubscription({ customer, tier: "starter", trialDays: 14 });
    await ingest(db.sql, sim.events);
    const { inbox: worker, registry } = inbox(true);
    const pass = await worker.processPendingOnce();
    expect(pass.events).toBe(sim.events.length);
    const row = await subscriptionRow(db.sql, sub);
    expect(row).toMatchObject({ status: "trialing", tier: "starter", stripe_price_id: sim.priceId("starter"), max_agents: 3 });
    expect(row?.trial_ends_at?.getTime()).toBe(sim.subscriptions.get(sub)!.trialEnd! * 1000);
    expect(row?.current_period_end?.getTime()).toBe(sim.subscriptions.get(sub)!.periodEnd * 1000);
    const [account] = await db.sql`select email, full_name from accounts where stripe_customer_id = ${customer}`;
    expect(account).toEqual({ email: "trial@example.com", full_name: "Tria" });
    const instances = await db.sql`select i.id from instances i join subscriptions s on s.id = i.subscription_id where s.stripe_subscription_id = ${sub}`;
    expect(instances).toHaveLength(1);
    expect(await billingAudit(sub)).toBe(1);
    expect(await counterValue(registry, { type: "customer.subscription.created", result: "processed" })).toBe(1);
    // The same events again (duplicates of the inbox rows are impossible, so: new events, same state).
    sim.updateCustomer(customer, { name: "Tria" });
    await ingest(db.sql, sim.events);
    await worker.processPendingOnce();
    expect(await billingAudit(sub)).toBe(1);
    expect(await db.sql`select 1 from instances i join subscriptions s on s.id = i.subscription_id where s.stripe_subscription_id = ${sub}`).toHaveLength(1);
  });

  test("reordered and late events cannot leave an old state: the re-read is the truth", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "order@example.com" });
    const sub = sim.createSubscription({ customer, tier: "starter" });
    clock.advance(10);
    sim.changeTier(sub, "professional");
    clock.advance(10);
    sim.failPayment(sub);
    await ingest(db.sql, [...sim.events].reverse());
    await inbox(true).inbox.processPendingOnce();
    const row = await subscriptionRow(db.sql, sub);
    expect(row).toMatchObject({ status: "past_due", tier: "professional", max_agents: 10 });
    expect(row?.past_due_since).toBeInstanceOf(Date);
  });

  test("an API failure is retried; after maxAttempts the event is dead and visible", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "flaky@example.com" });
    await ingest(db.sql, sim.events.slice(-1));
    const id = sim.events.at(-1)!.id as string;
    const { inbox: worker, registry } = inbox(true, { maxAttempts: 2 });
    fake.failNext(1);
    await worker.processPendingOnce();
    expect(await eventStatus(id)).toMatchObject({ status: "pending", attempts: 1 });
    await worker.processPendingOnce();
    expect(await eventStatus(id)).toMatchObject({ status: "processed" });
    expect(await db.sql`select 1 from accounts where stripe_customer_id = ${customer}`).toHaveLength(1);

    sim.updateCustomer(customer, { name: "Flaky" });
    await ingest(db.sql, sim.events.slice(-1));
    const second = sim.events.at(-1)!.id as string;
    fake.failNext(2);
    await worker.processPendingOnce();
    await worker.processPendingOnce();
    expect(await eventStatus(second)).toMatchObject({ status: "dead", attempts: 2 });
    const summary = await inboxSummary(db.sql);
    expect(summary.dead.map((d) => d.id)).toContain(second);
    expect(summary.dead.find((d) => d.id === second)?.lastError).toMatch(/injected failure/);
    expect(await counterValue(registry, { type: "customer.updated", result: "dead" })).toBe(1);
  });
});

describe("payload mode (no API key)", () => {
  test("a subscription before its customer waits, then applies once the customer arrives", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "late-customer@example.com" });
    const sub = sim.createSubscription({ customer, tier: "enterprise" });
    const [customerEvent, ...rest] = sim.events.slice(-8);
    expect(customerEvent?.type).toBe("customer.created");
    await ingest(db.sql, rest);
    const { inbox: worker } = inbox(false, { deferMs: 3_600_000 });
    await worker.processPendingOnce();
    const created = rest.find((e) => e.type === "customer.subscription.created")!;
    expect(await eventStatus(created.id as string)).toMatchObject({ status: "pending", attempts: 0, last_error: expect.stringMatching(/not known yet/) });
    expect(await subscriptionRow(db.sql, sub)).toBeUndefined();
    await ingest(db.sql, [customerEvent!]);
    await worker.processPendingOnce();
    await worker.processPendingOnce();
    expect(await eventStatus(created.id as string)).toMatchObject({ status: "processed" });
    expect(await subscriptionRow(db.sql, sub)).toMatchObject({ status: "active", tier: "enterprise" });
  });

  test("invoice.payment_failed alone does not set past_due; the subscription update does", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "payfail@example.com" });
    const sub = sim.createSubscription({ customer, tier: "starter" });
    await ingest(db.sql, sim.events);
    const { inbox: worker } = inbox(false);
    await worker.processPendingOnce();
    const before = sim.events.length;
    clock.advance(60);
    sim.failPayment(sub);
    const failure = sim.events.slice(before);
    await ingest(db.sql, failure.filter((e) => String(e.type).startsWith("invoice.")));
    await worker.processPendingOnce();
    expect((await subscriptionRow(db.sql, sub))?.status).toBe("active");
    await ingest(db.sql, failure);
    await worker.processPendingOnce();
    expect((await subscriptionRow(db.sql, sub))?.status).toBe("past_due");
  });

  test("a late older payload is skipped; canceled never reverts", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "guard@example.com" });
    const sub = sim.createSubscription({ customer, tier: "starter" });
    const created = sim.events.slice();
    clock.advance(5);
    sim.cancelNow(sub);
    const deleted = sim.events.slice(created.length);
    const { inbox: worker } = inbox(false);
    await ingest(db.sql, [created[0]!, ...deleted]);
    await worker.processPendingOnce();
    await ingest(db.sql, created);
    await worker.processPendingOnce();
    expect((await subscriptionRow(db.sql, sub))?.status).toBe("canceled");
  });

  test("an unknown price ends dead with a message that names it", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "mystery@example.com" });
    const price = { ...priceObject({ id: "price_mystery", tier: "starter", product: "prod", created: clock.now() }), lookup_key: null, metadata: {} };
    const object = subscriptionObject({
      id: "sub_mystery", itemId: "si_m", customer, price, status: "active", created: clock.now(), currentPeriodStart: clock.now(),
      currentPeriodEnd: clock.now() + 100, cancelAtPeriodEnd: false, cancelAt: null, canceledAt: null, endedAt: null, trialStart: null, trialEnd: null, latestInvoice: null,
    });
    const event = eventObject({ id: "evt_mystery", type: "customer.subscription.created", created: clock.now(), object });
    await ingest(db.sql, [...sim.events, event]);
    const { inbox: worker } = inbox(false, { maxAttempts: 3 });
    for (let i = 0; i < 3; i++) await worker.processPendingOnce();
    const row = await eventStatus("evt_mystery");
    expect(row).toMatchObject({ status: "dead", attempts: 3 });
    expect(row?.last_error).toMatch(/price_mystery/);
    expect(await subscriptionRow(db.sql, "sub_mystery")).toBeUndefined();
  });
});

describe("accounts from customers", () => {
  test("an existing account with the same email is linked, not duplicated; customer.deleted keeps it", async () => {
    const [existing] = await db.sql<{ id: string }[]>`insert into accounts (email, full_name) values ('signup@example.com', 'Signed Up') returning id`;
    const { sim } = fake;
    const customer = sim.createCustomer({ email: "SignUp@Example.com", name: "From Stripe" });
    await ingest(db.sql, sim.events);
    const { inbox: worker } = inbox(false);
    await worker.processPendingOnce();
    const rows = await db.sql`select id, full_name from accounts where stripe_customer_id = ${customer}`;
    expect(rows).toEqual([{ id: existing!.id, full_name: "Signed Up" }]);
    sim.deleteCustomer(customer);
    await ingest(db.sql, sim.events);
    await worker.processPendingOnce();
    expect(await db.sql`select 1 from accounts where id = ${existing!.id} and stripe_customer_id = ${customer}`).toHaveLength(1);
    const audits = await db.sql`select action from audit_logs where account_id = ${existing!.id} and action_category = 'billing' order by id`;
    expect(audits.map((a) => a.action)).toEqual(["account.linked", "customer.deleted"]);
  });

  test("a customer without an email gets a placeholder address until it has one", async () => {
    const { sim } = fake;
    const customer = sim.createCustomer({ email: null });
    await ingest(db.sql, sim.events);
    const { inbox: worker } = inbox(false);
    await worker.processPendingOnce();
    const [row] = await db.sql`select email from accounts where stripe_customer_id = ${customer}`;
    expect(row?.email).toMatch(/@stripe-customer\.invalid$/);
    sim.updateCustomer(customer, { email: "real@example.com" });
    await ingest(db.sql, sim.events);
    await worker.processPendingOnce();
    const [after] = await db.sql`select email from accounts where stripe_customer_id = ${customer}`;
    expect(after?.email).toBe("real@example.com");
  });
});
