/**
 * The inbox worker in payload mode handles the customers of a pass in batches, one transaction per
 * batch: what that must not change (every customer's events applied in order, a customer locked
 * elsewhere skipped) and what it must add (a batch failing as a whole is retried customer by
 * customer, and nothing is counted for a transaction that rolled back).
 */
import postgres from "postgres";
import { describe, expect, test } from "vitest";

import { StripeInbox } from "../../src/sources/stripe/inbox.ts";
import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { eventually } from "../e2e/harness.ts";
import type { TestDatabase } from "../helpers/db.ts";
import { counterValue, inboxDatabasePerFile,ingest, newMetrics, silentLogger, subscriptionRow } from "./helpers.ts";


let db: TestDatabase;
inboxDatabasePerFile((created) => (db = created));

/** `n` sign-ups whose first payment fails: customer, subscription and three invoice events each. */
function signups(n: number, prefix: string): { sim: StripeSim; customers: string[]; subscriptions: string[] } {
  const sim = new StripeSim(() => Math.floor(Date.now() / 1000));
  const customers: string[] = [];
  const subscriptions: string[] = [];
  for (let i = 0; i < n; i++) {
    const customer = sim.createCustomer({ email: `${prefix}-${i}@example.com` });
    customers.push(customer);
    subscriptions.push(sim.createSubscription({ customer, tier: "starter", failFirstPayment: true }));
  }
  return { sim, customers, subscriptions };
}

function worker(): { inbox: StripeInbox; registry: ReturnType<typeof newMetrics>["registry"] } {
  const { registry, metrics } = newMetrics();
  return { inbox: new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger, concurrency: 4 }), registry };
}

const pendingOf = async (customer: string): Promise<number> =>
  (await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events where customer_id = ${customer} and status = 'pending'`)[0]!.n;

interface RecordedPass {
  readonly began: number;
  readonly customers: number;
  readonly events: number;
}

/** Wraps the worker's pass to record when each began and what it took. */
function recordPasses(inbox: StripeInbox): RecordedPass[] {
  const passes: RecordedPass[] = [];
  const pass = inbox.processPendingOnce.bind(inbox);
  inbox.processPendingOnce = async () => {
    const began = performance.now();
    const result = await pass();
    passes.push({ began, customers: result.customers, events: result.events });
    return result;
  };
  return passes;
}

describe("inbox batches (payload mode)", () => {
  test("one pass applies 40 customers' sign-ups, 200 events, in batched transactions", async () => {
    const { sim, subscriptions } = signups(40, "batch");
    expect(await ingest(db.sql, sim.events)).toBe(200);
    const { inbox, registry } = worker();
    const pass = await inbox.processPendingOnce();
    expect(pass).toMatchObject({ customers: 40, events: 200 });
    expect(pass.counts).toEqual({ processed: 200 });
    for (const sub of subscriptions) expect(await subscriptionRow(db.sql, sub)).toMatchObject({ status: "incomplete", tier: "starter" });
    expect(await counterValue(registry, { type: "customer.created", result: "processed" })).toBe(40);
    const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events where status <> 'processed'`;
    expect(left!.n).toBe(0);
  });

  test("a customer whose inbox lock another replica holds is skipped; the others of its batch are applied", async () => {
    const { sim, customers, subscriptions } = signups(6, "locked");
    await ingest(db.sql, sim.events);
    const held = customers[2]!;
    const other = await db.sql.reserve();
    try {
      await other`select pg_advisory_lock(hashtext(${`stripe_customer:${held}`}))`;
      const { inbox } = worker();
      expect(await inbox.processPendingOnce()).toMatchObject({ events: 25 });
      expect(await pendingOf(held)).toBe(5);
      expect(await subscriptionRow(db.sql, subscriptions[2]!)).toBeUndefined();
      for (const i of [0, 1, 3, 4, 5]) expect(await pendingOf(customers[i]!)).toBe(0);
      await other`select pg_advisory_unlock(hashtext(${`stripe_customer:${held}`}))`;
      expect(await inbox.processPendingOnce()).toMatchObject({ events: 5 });
      expect(await subscriptionRow(db.sql, subscriptions[2]!)).toMatchObject({ status: "incomplete" });
    } finally {
      other.release();
    }
  });

  test("a batch that fails outside any event is retried customer by customer: only the failing customer waits, nothing is counted twice", async () => {
    const { sim, customers } = signups(8, "poison");
    await ingest(db.sql, sim.events);
    const poisoned = customers[5]!;
    // Marking this customer's events processed fails, as a statement can outside any event's savepoint.
    await db.sql.unsafe(`
      create function inbox_test_poison() returns trigger language plpgsql as $$
      begin raise exception 'poisoned customer'; end $$;
      create trigger poison before update of status on stripe_events for each row
        when (new.status = 'processed' and old.customer_id = '${poisoned}') execute function inbox_test_poison();`);
    try {
      const { inbox, registry } = worker();
      const pass = await inbox.processPendingOnce();
      expect(pass.events).toBe(35);
      expect(pass.counts).toEqual({ processed: 35 });
      expect(await counterValue(registry, { type: "customer.created", result: "processed" })).toBe(7);
      expect(await pendingOf(poisoned)).toBe(5);
      const [attempts] = await db.sql<{ n: number }[]>`select max(attempts)::int as n from stripe_events where customer_id = ${poisoned}`;
      expect(attempts!.n).toBe(0);
      for (const customer of customers.filter((c) => c !== poisoned)) expect(await pendingOf(customer)).toBe(0);
    } finally {
      await db.sql.unsafe(`drop trigger poison on stripe_events; drop function inbox_test_poison();`);
    }
  });

  test("events apply without a savepoint each; one that fails rolls its batch back, and the retry, a savepoint per event, fails only it", async () => {
    const { sim, customers, subscriptions } = signups(8, "savepoints");
    await ingest(db.sql, sim.events);
    const statements: string[] = [];
    const watched = postgres(db.url, { max: 4, onnotice: () => {}, debug: (_connection, query) => void statements.push(query.trim().toLowerCase()) });
    const poisoned = subscriptions[3]!;
    // Applying this subscription fails inside its event, as a constraint or a trigger can.
    await db.sql.unsafe(`
      create function inbox_test_poison_sub() returns trigger language plpgsql as $$
      begin raise exception 'poisoned subscription'; end $$;
      create trigger poison_sub before insert on subscriptions for each row
        when (new.stripe_subscription_id = '${poisoned}') execute function inbox_test_poison_sub();`);
    try {
      const { registry, metrics } = newMetrics();
      const inbox = new StripeInbox({ sql: watched, stripe: null, priceTiers: {}, metrics, logger: silentLogger, concurrency: 1 });
      const pass = await inbox.processPendingOnce();
      expect(pass.counts).toEqual({ processed: 39, failed: 1 });
      expect(await counterValue(registry, { type: "customer.subscription.created", result: "failed" })).toBe(1);
      for (const sub of subscriptions.filter((s) => s !== poisoned)) expect(await subscriptionRow(db.sql, sub)).toMatchObject({ status: "incomplete" });
      expect(await subscriptionRow(db.sql, poisoned)).toBeUndefined();
      // Its customer's other events applied; only the failed event waits for its retry, one attempt counted.
      expect(await pendingOf(customers[3]!)).toBe(1);
      const waiting = await db.sql<{ type: string; attempts: number; last_error: string }[]>`
        select type, attempts, last_error from stripe_events where customer_id = ${customers[3]!} and status = 'pending'`;
      expect(waiting).toEqual([{ type: "customer.subscription.created", attempts: 1, last_error: "postgres error P0001" }]);
      for (const customer of customers.filter((c) => c !== customers[3])) expect(await pendingOf(customer)).toBe(0);
      // One batch of 8 customers without savepoints (rolled back), then 8 isolated retries with them.
      const savepoints = statements.filter((q) => q.startsWith("savepoint"));
      expect(savepoints.length).toBe(16); // a customer and a subscription event per customer
      expect(statements.filter((q) => q === "begin").length).toBe(9);

      statements.length = 0;
      const clean = signups(8, "clean");
      await ingest(db.sql, clean.sim.events);
      expect((await inbox.processPendingOnce()).counts).toEqual({ processed: 40 });
      expect(statements.filter((q) => q.startsWith("savepoint"))).toEqual([]);
    } finally {
      await watched.end();
      await db.sql.unsafe(`drop trigger poison_sub on subscriptions; drop function inbox_test_poison_sub();`);
    }
  });

  test("a pass that was not full is followed no sooner than minPassIntervalMs after it began; each sign-up is applied in one pass", async () => {
    const { sim, subscriptions } = signups(20, "trickle");
    const perCustomer = sim.events.length / 20;
    const { registry, metrics } = newMetrics();
    const minPassIntervalMs = 200;
    const customersPerPass = 5;
    const inbox = new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger, minPassIntervalMs, customersPerPass });
    const passes = recordPasses(inbox);
    const stop = new AbortController();
    const running = inbox.start(stop.signal);
    try {
      // One sign-up every 20 ms, the webhook's wake after each, as `serve` does. A sign-up's events
      // are committed together so that a pass sees all of them or none (the count below relies on it).
      for (let i = 0; i < 20; i++) {
        await db.sql.begin((tx) => ingest(tx, sim.events.slice(i * perCustomer, (i + 1) * perCustomer)));
        inbox.wake();
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      await eventually("every sign-up applied", async () => (await counterValue(registry, { type: "customer.created", result: "processed" })) === 20, 15_000);
    } finally {
      stop.abort();
      await running;
    }
    for (const sub of subscriptions) expect(await subscriptionRow(db.sql, sub)).toMatchObject({ status: "incomplete" });
    const working = passes.filter((pass) => pass.events > 0);
    expect(working.reduce((sum, pass) => sum + pass.customers, 0)).toBe(20);
    expect(working.reduce((sum, pass) => sum + pass.events, 0)).toBe(sim.events.length);
    // The contract itself, whatever the machine's speed: after a pass that was not full, the next
    // begins at least minPassIntervalMs after it began (1 ms allowed for timer rounding).
    const gaps = working.slice(1).map((next, i) => ({ after: working[i]!, gapMs: next.began - working[i]!.began }));
    for (const { after, gapMs } of gaps) if (after.customers < customersPerPass) expect(gapMs).toBeGreaterThanOrEqual(minPassIntervalMs - 1);
    // 20 arrivals 20 ms apart cannot each have had a pass of their own.
    expect(working.length).toBeLessThan(20);
  });

  test("a full pass is followed at once: 20 waiting sign-ups, 5 per pass, apply long before one interval", async () => {
    const { sim } = signups(20, "backlog");
    await ingest(db.sql, sim.events);
    const { registry, metrics } = newMetrics();
    const inbox = new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger, minPassIntervalMs: 60_000, customersPerPass: 5 });
    const passes = recordPasses(inbox);
    const stop = new AbortController();
    const running = inbox.start(stop.signal);
    try {
      // Were a full pass followed only after the interval, the last sign-ups would wait 3 minutes.
      await eventually("every sign-up applied", async () => (await counterValue(registry, { type: "customer.created", result: "processed" })) === 20, 15_000);
    } finally {
      stop.abort();
      await running;
    }
    expect(passes.filter((pass) => pass.events > 0).map((pass) => pass.customers)).toEqual([5, 5, 5, 5]);
  });

  test("by default payload mode works on one batch at a time (as many customers per transaction as it may); an explicit concurrency splits the pass", async () => {
    /** The transactions of a pass over 50 waiting customers (customersPerPass). */
    const transactionsOfAPass = async (concurrency: number | undefined, prefix: string): Promise<number> => {
      const { sim } = signups(50, prefix);
      await ingest(db.sql, sim.events);
      const statements: string[] = [];
      const watched = postgres(db.url, { max: 4, onnotice: () => {}, debug: (_connection, query) => void statements.push(query.trim().toLowerCase()) });
      try {
        const { metrics } = newMetrics();
        const inbox = new StripeInbox({ sql: watched, stripe: null, priceTiers: {}, metrics, logger: silentLogger, ...(concurrency === undefined ? {} : { concurrency }) });
        expect(await inbox.processPendingOnce()).toMatchObject({ customers: 50, events: 250 });
        return statements.filter((q) => q === "begin").length;
      } finally {
        await watched.end();
      }
    };
    // 2 transactions of 25 customers by default, 4 of 13 with concurrency 4.
    expect(await transactionsOfAPass(undefined, "default-concurrency")).toBe(2);
    expect(await transactionsOfAPass(4, "four-at-once")).toBe(4);
  });
});
