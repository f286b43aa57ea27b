import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { catchUpEvents, sweepSubscriptions } from "../../src/sources/stripe/catchup.ts";
import { run as runCli, scenario } from "../../src/sources/stripe/cli.ts";
import { StripeInbox } from "../../src/sources/stripe/inbox.ts";
import { startStripeSources } from "../../src/sources/stripe/sources.ts";
import { tierOfStripeSubscription } from "../../src/state/instances.ts";
import { FakeClock, type FakeStripe, startFakeStripe } from "../fake-stripe/index.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { newMetrics, SECRET, silentLogger, startWebhookServer, subscriptionRow } from "./helpers.ts";

let db: TestDatabase;
let fake: FakeStripe;
let clock: FakeClock;

beforeAll(async () => {
  db = await createTestDatabase();
  clock = new FakeClock();
  fake = await startFakeStripe({ clock });
});
afterAll(async () => {
  await fake?.close();
  await db?.drop();
});

const capture = (): { write(text: string): void; text: () => string } => {
  const chunks: string[] = [];
  return { write: (t) => void chunks.push(t), text: () => chunks.join("") };
};
const config = (port = 1) => ({ port, stripe: { webhookSecrets: [SECRET], apiKey: undefined, apiBase: undefined, priceTiers: {} } });

describe("catch-up", () => {
  test("events the webhook never received are listed, stored once, and applied", async () => {
    const { metrics } = newMetrics();
    const since = new Date(clock.now() * 1000);
    const customer = fake.sim.createCustomer({ email: "missed@example.com" });
    const sub = fake.sim.createSubscription({ customer, tier: "professional" });
    const o = { sql: db.sql, stripe: fake.client(), priceTiers: {}, metrics, logger: silentLogger };
    const first = await catchUpEvents(o, since);
    expect(first.stored).toBe(fake.sim.events.length);
    const second = await catchUpEvents(o, since);
    expect(second).toEqual({ stored: 0, listed: fake.sim.events.length });
    await new StripeInbox({ ...o, stripe: fake.client() }).processPendingOnce();
    expect((await subscriptionRow(db.sql, sub))?.status).toBe("active");
  });

  test("the sweep repairs a subscription whose events were all lost", async () => {
    const { metrics } = newMetrics();
    const customer = fake.sim.createCustomer({ email: "swept@example.com" });
    const sub = fake.sim.createSubscription({ customer, tier: "starter", trialDays: 3 });
    const result = await sweepSubscriptions({ sql: db.sql, stripe: fake.client(), priceTiers: {}, metrics, logger: silentLogger });
    expect(result.failed).toBe(0);
    expect(result.customers).toBeGreaterThanOrEqual(1);
    expect((await subscriptionRow(db.sql, sub))?.status).toBe("trialing");
  });
});

describe("stripe CLI", () => {
  test("sync without an API key: clear error, exit 2", async () => {
    const err = capture();
    expect(await runCli(["sync"], { sql: db.sql, config: config(), stderr: err, stdout: capture() })).toBe(2);
    expect(err.text()).toMatch(/STRIPE_API_KEY/);
  });

  test("sync --customer re-reads one customer now", async () => {
    const customer = fake.sim.createCustomer({ email: "cli-sync@example.com" });
    const sub = fake.sim.createSubscription({ customer, tier: "enterprise" });
    const out = capture();
    expect(await runCli(["sync", "--customer", customer], { sql: db.sql, config: config(), stripeClient: fake.client(), stdout: out, stderr: capture() })).toBe(0);
    expect(out.text()).toMatch(/1 subscription\(s\), 1 changed/);
    expect((await subscriptionRow(db.sql, sub))?.tier).toBe("enterprise");
  });

  test("send customer.subscription.created posts signed, complete events a payload-mode daemon applies", async () => {
    const server = await startWebhookServer(db.sql);
    try {
      const out = capture();
      const code = await runCli(["send", "customer.subscription.created", "--tier", "professional", "--url", server.url], { config: config(), stdout: out, stderr: capture() });
      expect(code).toBe(0);
      const lines = out.text().trim().split("\n");
      expect(lines[0]).toMatch(/^evt_\S+ customer\.created -> 200 /);
      expect(lines[1]).toMatch(/customer\.subscription\.created -> 200/);
      expect(lines.some((l) => l.includes("invoice.paid -> 200"))).toBe(true);
      const { metrics } = newMetrics();
      await new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger }).processPendingOnce();
      const created = lines[1]!.split(" ")[0]!;
      const [row] = await db.sql`select payload #>> '{data,object,id}' as sub from stripe_events where id = ${created}`;
      expect(await subscriptionRow(db.sql, row!.sub as string)).toMatchObject({ status: "active", tier: "professional" });
    } finally {
      await server.close();
    }
  });

  test("send prints the ids it used, and a follow-up on a subscription keeps its tier unless --tier is given", async () => {
    const server = await startWebhookServer(db.sql);
    const inbox = new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics: newMetrics().metrics, logger: silentLogger });
    const currentTier = (id: string) => tierOfStripeSubscription(db.sql, id);
    try {
      const created = capture();
      expect(await runCli(["send", "customer.subscription.created", "--tier", "professional", "--url", server.url], { config: config(), stdout: created, stderr: capture() })).toBe(0);
      const ids = /^customer (cus_\S+) subscription (sub_\S+)$/m.exec(created.text());
      expect(ids, created.text()).not.toBeNull();
      const [, customer, subscription] = ids!;
      await inbox.processPendingOnce();
      expect(await subscriptionRow(db.sql, subscription!)).toMatchObject({ status: "active", tier: "professional" });

      const failed = capture();
      const code = await runCli(["send", "invoice.payment_failed", "--customer", customer!, "--subscription", subscription!, "--url", server.url], { config: config(), stdout: failed, stderr: capture(), currentTier });
      expect(code, failed.text()).toBe(0);
      expect(failed.text()).toContain(`customer ${customer} subscription ${subscription}\n`);
      await inbox.processPendingOnce();
      expect(await subscriptionRow(db.sql, subscription!)).toMatchObject({ status: "past_due", tier: "professional" });

      const err = capture();
      expect(await runCli(["send", "invoice.paid", "--subscription", "sub_unknown", "--url", server.url], { config: config(), stdout: capture(), stderr: err, currentTier })).toBe(2);
      expect(err.text()).toMatch(/subscription sub_unknown is not in the database, so its current tier is unknown: give --tier/);
    } finally {
      await server.close();
    }
  });

  test("send scenarios target existing objects and follow stripe.md", () => {
    const types = (events: ReturnType<typeof scenario>): unknown[] => events.map((e) => e.type);
    const failed = scenario("invoice.payment_failed", "starter", { customer: "cus_existing", subscription: "sub_existing" });
    expect(types(failed)).toEqual(["invoice.created", "invoice.finalized", "invoice.payment_failed", "customer.subscription.updated"]);
    const update = failed.at(-1)!.data as { object: { id: string; status: string; customer: string } };
    expect(update.object).toMatchObject({ id: "sub_existing", status: "past_due", customer: "cus_existing" });
    const tier = scenario("customer.subscription.updated", "enterprise", { subscription: "sub_x" });
    const obj = (tier.at(-1)!.data as { object: { items: { data: Array<{ price: { lookup_key: string; metadata: { tier: string } } }> } } }).object;
    expect(obj.items.data[0]!.price).toMatchObject({ lookup_key: "enterprise_monthly", metadata: { tier: "enterprise" } });
  });

  test("usage errors exit 2", async () => {
    expect(await runCli(["send", "charge.refunded"], { config: config(), stdout: capture(), stderr: capture() })).toBe(2);
    expect(await runCli(["send", "customer.created", "--tier", "free"], { config: config(), stdout: capture(), stderr: capture() })).toBe(2);
    expect(await runCli(["bogus"], { config: config(), stdout: capture(), stderr: capture() })).toBe(2);
  });
});

describe("startStripeSources", () => {
  test("starts the worker, serves the webhook, stops on abort", async () => {
    const { metrics } = newMetrics();
    const controller = new AbortController();
    const sources = startStripeSources(
      { sql: db.sql, config: { stripe: { webhookSecrets: [SECRET], apiKey: undefined, apiBase: undefined, priceTiers: {} } }, stripeClient: null, metrics, logger: silentLogger },
      controller.signal,
    );
    expect(sources.apiMode).toBe(false);
    expect(sources.webhook).not.toBeNull();
    controller.abort();
    await sources.done;
  });
});
