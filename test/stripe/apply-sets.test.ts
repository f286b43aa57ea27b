/**
 * The inbox applies a batch round by round, the new accounts and subscriptions of a round
 * set-wise (src/sources/stripe/apply-sets.ts). What that must not change: the rows and audit
 * entries are those the one-at-a-time path writes, event after event (`applyEventPayload`), for
 * every kind of event a batch can mix. What it must add: a batch of sign-ups in a few statements.
 */
import postgres, { type Sql } from "postgres";
import { afterAll, beforeAll, expect, test } from "vitest";

import { applyEventPayload } from "../../src/sources/stripe/apply.ts";
import { StripeInbox } from "../../src/sources/stripe/inbox.ts";
import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { deferEvent, markProcessed, type PendingEvent } from "../../src/state/stripe-events.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { ingest, newMetrics, silentLogger } from "./helpers.ts";

let setWise: TestDatabase;
let oneByOne: TestDatabase;
beforeAll(async () => {
  [setWise, oneByOne] = await Promise.all([createTestDatabase(), createTestDatabase()]);
});
afterAll(async () => {
  await Promise.all([setWise?.drop(), oneByOne?.drop()]);
});

const inbox = (sql: Sql): StripeInbox => new StripeInbox({ sql, stripe: null, priceTiers: {}, metrics: newMetrics().metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 } });

/** The reference: every pending event in arrival order, each in a transaction of its own. */
async function applyOneByOne(sql: Sql): Promise<void> {
  const rows = await sql<{ id: string; type: string; object_id: string; customer_id: string; created: Date; received_at: Date; attempts: number; payload: unknown }[]>`
    select id, type, object_id, customer_id, created, received_at, attempts, payload from stripe_events where status = 'pending' order by received_at, id`;
  for (const row of rows) {
    const event: PendingEvent = { id: row.id, type: row.type, objectId: row.object_id, customerId: row.customer_id, created: row.created, receivedAt: row.received_at, attempts: row.attempts, payload: row.payload };
    const outcome = await sql.begin(async (tx) => {
      await tx`select set_config('mindroom.actor', 'stripe', true)`; // as the inbox's lockCustomers does
      return applyEventPayload(tx, event, {});
    });
    if (outcome.kind === "deferred") await deferEvent(sql, row.id, outcome.detail, new Date(Date.now() + 60_000));
    else await markProcessed(sql, [row.id]);
  }
}

/** What the billing tables hold, with generated ids replaced by the Stripe ids and emails they stand for. */
async function billingState(sql: Sql): Promise<unknown> {
  const accounts = await sql`
    select a.email, a.full_name, a.company_name, a.stripe_customer_id,
           array(select c.stripe_customer_id from stripe_customers c where c.account_id = a.id order by 1) as customers
    from accounts a order by a.email`;
  const subscriptions = await sql`
    select s.stripe_subscription_id, a.email, s.status::text, s.tier::text, s.stripe_price_id, s.current_period_start, s.current_period_end,
           s.cancel_at_period_end, s.canceled_at, s.trial_ends_at, s.stripe_state_at, s.max_agents,
           array(select i.status::text from instances i where i.subscription_id = s.id order by 1) as instances
    from subscriptions s join accounts a on a.id = s.account_id order by s.stripe_subscription_id`;
  const audit = await sql`
    select l.action, a.email, l.instance_id is not null as has_instance, l.actor,
           (l.details - 'subscription_id' - 'instance_id') as details,
           (select s.stripe_subscription_id from subscriptions s where s.id::text = l.details->>'subscription_id') as subscription
    from audit_logs l left join accounts a on a.id = l.account_id
    where l.action_category = 'billing' or l.action like 'subscription%'
    order by l.action, a.email, subscription, l.details::text`;
  const events = await sql`select id, status::text, attempts, next_attempt_at > received_at as parked from stripe_events order by id`;
  return { accounts, subscriptions, audit, events };
}

/** Counts the statements sent on a connection of its own to the database. */
function countingConnection(url: string): { sql: Sql; statements: () => number } {
  let statements = 0;
  const sql = postgres(url, { max: 1, onnotice: () => {}, debug: () => void (statements += 1) });
  return { sql, statements: () => statements };
}

test("a mixed batch applied round by round writes what the one-at-a-time path writes", async () => {
  const sim = new StripeSim(() => 1_790_000_000);
  // Before: a customer with an active subscription.
  const known = sim.createCustomer({ email: "known@example.com", name: "Known" });
  const knownSub = sim.createSubscription({ customer: known, tier: "starter" });
  const before = [...sim.events];
  const mark = sim.events.length;
  // The batch: sign-ups (paid, trialing, first payment failed), a second customer of a known
  // email, two new customers of one email, changes to the known customer and its subscription,
  // a subscription whose customer event never came, a deleted customer never seen.
  for (let i = 0; i < 6; i++) {
    const customer = sim.createCustomer({ email: `new-${i}@example.com`, name: `New ${i}` });
    sim.createSubscription({ customer, tier: (["starter", "professional", "enterprise"] as const)[i % 3]!, ...(i % 3 === 1 ? { trialDays: 14 } : {}), ...(i % 3 === 2 ? { failFirstPayment: true } : {}) });
  }
  const again = sim.createCustomer({ email: "KNOWN@example.com", name: "Known Again" });
  sim.createSubscription({ customer: again, tier: "professional" });
  for (const name of ["Twin A", "Twin B"]) sim.createSubscription({ customer: sim.createCustomer({ email: "twin@example.com", name }), tier: "starter" });
  sim.updateCustomer(known, { name: "Known Renamed" });
  sim.changeTier(knownSub, "enterprise");
  const orphan = sim.createCustomer({ email: "orphan@example.com" });
  sim.createSubscription({ customer: orphan, tier: "starter" });
  const gone = sim.createCustomer({ email: "gone@example.com" });
  sim.deleteCustomer(gone);
  const batch = sim.events.slice(mark).filter((event) => !(event.type === "customer.created" && (event.data as { object: { id: string } }).object.id === orphan));
  const neverSeen = batch.filter((event) => event.type !== "customer.created" || (event.data as { object: { id: string } }).object.id !== gone);

  for (const db of [setWise, oneByOne]) {
    await ingest(db.sql, before);
    await applyOneByOne(db.sql);
    await ingest(db.sql, neverSeen);
  }
  const counted = countingConnection(setWise.url);
  try {
    const pass = await inbox(counted.sql).processPendingOnce();
    expect(pass.counts.failed ?? 0, "no batch fell back to one customer at a time").toBe(0);
  } finally {
    await counted.sql.end();
  }
  await applyOneByOne(oneByOne.sql);

  const [expected, actual] = [await billingState(oneByOne.sql), await billingState(setWise.sql)];
  expect(actual).toEqual(expected);
  const { subscriptions, events } = actual as { subscriptions: { instances: string[] }[]; events: { parked: boolean; status: string }[] };
  expect(subscriptions.filter((s) => s.instances.length > 0).length, "paid and trialing sign-ups asked for instances").toBeGreaterThanOrEqual(5);
  expect(events.filter((e) => e.status === "pending" && e.parked), "the orphan's subscription waits for its customer").toHaveLength(1);
});

test("a pass of 40 sign-ups (220 events) costs a few dozen statements, not hundreds", async () => {
  const sim = new StripeSim(() => 1_790_100_000);
  for (let i = 0; i < 40; i++) sim.createSubscription({ customer: sim.createCustomer({ email: `many-${i}@example.com` }), tier: "starter", ...(i % 2 === 0 ? { failFirstPayment: true } : {}) });
  await ingest(setWise.sql, sim.events);
  const counted = countingConnection(setWise.url);
  try {
    const pass = await inbox(counted.sql).processPendingOnce();
    expect(sim.events).toHaveLength(220);
    expect(pass).toMatchObject({ customers: 40, events: 220, counts: { processed: 220 } });
    // Per batch (25 customers, then 15): begin, locks, events, two rounds of set-wise statements
    // (accounts: 6, subscriptions: 6), mark processed, commit. One at a time: about 10 per sign-up.
    expect(counted.statements()).toBeLessThan(50);
  } finally {
    await counted.sql.end();
  }
  const [row] = await setWise.sql<{ accounts: number; subscriptions: number; instances: number }[]>`
    select (select count(*)::int from accounts where email like 'many-%') as accounts,
           (select count(*)::int from subscriptions s join accounts a on a.id = s.account_id where a.email like 'many-%') as subscriptions,
           (select count(*)::int from instances i join subscriptions s on s.id = i.subscription_id join accounts a on a.id = s.account_id where a.email like 'many-%') as instances`;
  expect(row).toEqual({ accounts: 40, subscriptions: 40, instances: 20 });
});
