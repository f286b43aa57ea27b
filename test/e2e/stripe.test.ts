/**
 * Stripe end to end (issue 5, item 10): a subscription created on the fake Stripe, delivered to a
 * real HTTP webhook and applied by the inbox worker in API mode, ends as a running, healthy
 * instance on the sandbox host; canceling it stops the instance; once the retention period has
 * passed on the reconciler's clock, the instance is backed up and torn down.
 *
 * Clocks: the fake Stripe's clock is set to the wall clock before each lifecycle step, so Stripe's
 * `canceled_at` is never ahead of the reconciler's clock (which only moves forward, via
 * `h.advance`). RETENTION_PERIOD is 1 day, so advancing 2 days ends it.
 */
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";
import { gunzipSync } from "node:zlib";

import { pino } from "pino";
import { Registry } from "prom-client";
import type Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { openArchive } from "../../src/runtime/backups.ts";
import { defaultDomainFor, HealthProber } from "../../src/sources/health.ts";
import { createStripeMetrics } from "../../src/sources/stripe/metrics.ts";
import { startStripeSources, type StripeSources } from "../../src/sources/stripe/sources.ts";
import { deliver, FAKE_API_KEY, FakeClock, type FakeStripe, planDeliveries, startFakeStripe } from "../fake-stripe/index.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

const SECRET = "whsec_e2e_stripe_test_secret";
const DAY_MS = 24 * 3600 * 1000;
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" });

let h: Harness;
let fake: FakeStripe;
let stripe: Stripe;
let sources: StripeSources;
let webhook: Server;
let webhookUrl: string;
const stopSources = new AbortController();
/** How many of the fake's events have been POSTed to the webhook so far. */
let delivered = 0;

/** What the test learns as it goes, shared by the steps below (they run in order). */
const state = { customerId: "", stripeSubscriptionId: "", subscriptionId: "", instanceId: "", subdomain: "" };

beforeAll(async () => {
  h = await startHarness({ seed: false, env: { RETENTION_PERIOD: "1d" } });
  fake = await startFakeStripe({ clock: new FakeClock() });
  stripe = fake.client();
  sources = startStripeSources(
    {
      sql: h.db.sql,
      config: { stripe: { webhookSecrets: [SECRET], apiKey: FAKE_API_KEY, apiBase: undefined, priceTiers: {} } },
      stripeClient: stripe,
      metrics: createStripeMetrics(h.registry),
      logger,
      // One catch-up listing at start-up only: every event of this test must arrive via the webhook.
      catchup: { intervalMs: 3_600_000 },
    },
    stopSources.signal,
  );
  webhook = createServer((req, res) => {
    if (req.method === "POST" && req.url === "/webhooks/stripe" && sources.webhook) return void sources.webhook(req, res);
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => webhook.listen(0, "127.0.0.1", resolve));
  webhookUrl = `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/webhooks/stripe`;
  // Wait for the start-up catch-up (events listing, then the sweep) so it cannot race the webhook.
  await eventually("start-up catch-up done", () => fake.requests.includes("GET /v1/subscriptions"), 30_000);
}, 120_000);

afterAll(async () => {
  stopSources.abort();
  await sources?.done;
  if (webhook) {
    webhook.closeAllConnections();
    await new Promise<void>((resolve) => webhook.close(() => resolve()));
  }
  await fake?.close();
  await h?.stop();
});

/** Moves the fake Stripe's clock to the wall clock (it never goes back). */
function alignStripeClock(): void {
  const wall = Math.floor(Date.now() / 1000);
  if (wall > fake.clock.now()) fake.clock.advance(wall - fake.clock.now());
}

/** POSTs every event the fake emitted since the last call, signed, in order; each must be accepted as new. */
async function deliverNewEvents(): Promise<string[]> {
  const events = fake.sim.events.slice(delivered);
  delivered = fake.sim.events.length;
  const results = await deliver(webhookUrl, planDeliveries(events), SECRET);
  for (const r of results) expect(r, `event ${r.eventId}`).toMatchObject({ status: 200, body: JSON.stringify({ received: true }) });
  return events.map((e) => String(e.type));
}

const running = (app: string): boolean => h.sandbox.control.app(app)?.running === true;

interface InstanceView {
  id: string;
  subscription_id: string;
  subdomain: string;
  status: string;
  health_status: string | null;
  generation: string;
  observed: string;
}

async function instanceOf(stripeSubscriptionId: string): Promise<InstanceView | undefined> {
  const rows = await h.db.sql<InstanceView[]>`
    select i.id, i.subscription_id, i.subdomain, i.status::text as status, i.health_status::text as health_status,
           i.generation::text as generation, i.observed_generation::text as observed
    from instances i join subscriptions s on s.id = i.subscription_id
    where s.stripe_subscription_id = ${stripeSubscriptionId}`;
  return rows[0];
}

async function subscriptionStatus(): Promise<{ status: string; canceled_at: Date | null } | undefined> {
  const rows = await h.db.sql<{ status: string; canceled_at: Date | null }[]>`
    select status::text as status, canceled_at from subscriptions where stripe_subscription_id = ${state.stripeSubscriptionId}`;
  return rows[0];
}

describe("Stripe → controller → sandbox host", () => {
  test("a subscription created on Stripe ends as a running, healthy instance", async () => {
    alignStripeClock();
    const customer = await stripe.customers.create({ email: "e2e-stripe@example.com", name: "E2E Customer" });
    const subscription = await stripe.subscriptions.create({ customer: customer.id, items: [{ price: fake.sim.priceId("professional") }] });
    expect(subscription.status).toBe("active");
    state.customerId = customer.id;
    state.stripeSubscriptionId = subscription.id;
    const types = await deliverNewEvents();
    expect(types).toContain("customer.created");
    expect(types).toContain("customer.subscription.created");

    await eventually("account, subscription and instance rows", async () => (await instanceOf(subscription.id)) !== undefined, 30_000);
    const [account] = await h.db.sql<{ email: string; full_name: string }[]>`select email, full_name from accounts where stripe_customer_id = ${customer.id}`;
    expect(account).toEqual({ email: "e2e-stripe@example.com", full_name: "E2E Customer" });
    const [sub] = await h.db.sql<{ status: string; tier: string }[]>`select status::text as status, tier::text as tier from subscriptions where stripe_subscription_id = ${subscription.id}`;
    expect(sub).toEqual({ status: "active", tier: "professional" });
    await eventually("every delivered event processed by the inbox", async () => {
      const [left] = await h.db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events where status not in ('processed', 'ignored')`;
      return left!.n === 0;
    });

    const inst = (await instanceOf(subscription.id))!;
    Object.assign(state, { instanceId: inst.id, subscriptionId: inst.subscription_id, subdomain: inst.subdomain });
    await eventually("every component running on the sandbox", () => appsOf(inst.subdomain).every(running), 60_000);
    await eventually("instance status running and converged", async () => {
      const row = await instanceOf(subscription.id);
      return row?.status === "running" && row.generation === row.observed;
    });
    expect(h.sandbox.control.app(`${inst.subdomain}-backend`)?.config.MINDROOM_TIER).toBe("professional");

    const unhealthy: string[] = [];
    const prober = new HealthProber({
      sql: h.db.sql,
      registry: new Registry(),
      domainFor: defaultDomainFor("mindroom.localhost"),
      onUnhealthy: (_sub, _id, components) => void unhealthy.push(...components),
      logger,
      timeoutMs: 10_000,
    });
    const [round] = await prober.probeOnce(inst.id);
    expect(round?.results.map((r) => [r.component, r.statusCode])).toEqual([
      ["matrix", 200],
      ["backend", 200],
      ["frontend", 200],
    ]);
    expect(round?.health).toBe("healthy");
    expect((await instanceOf(subscription.id))?.health_status).toBe("healthy");
    expect(unhealthy).toEqual([]);
  }, 120_000);

  test("canceling the subscription on Stripe stops every component", async () => {
    expect(state.instanceId, "needs the instance of the previous step").not.toBe("");
    // Data the teardown must keep: it has to be in the final backup.
    await writeFile(join(h.sandbox.control.storageDir(`${state.subdomain}-backend-data`), "agents.json"), JSON.stringify({ agents: ["e2e"] }));
    alignStripeClock();
    const canceled = await stripe.subscriptions.cancel(state.stripeSubscriptionId);
    expect(canceled.status).toBe("canceled");
    expect(await deliverNewEvents()).toContain("customer.subscription.deleted");

    await eventually("subscription canceled in the database", async () => (await subscriptionStatus())?.status === "canceled", 30_000);
    expect((await subscriptionStatus())?.canceled_at?.getTime()).toBe(canceled.canceled_at! * 1000);
    await eventually("every component stopped", () => appsOf(state.subdomain).every((app) => h.sandbox.control.app(app)?.running === false), 30_000);
    await eventually("instance status stopped", async () => (await instanceOf(state.stripeSubscriptionId))?.status === "stopped", 30_000);
    // Still inside the retention period: nothing is torn down yet.
    expect(appsOf(state.subdomain).every((app) => h.sandbox.control.app(app) !== undefined)).toBe(true);
    const [backups] = await h.db.sql<{ n: number }[]>`select count(*)::int as n from instance_backups where instance_id = ${state.instanceId}`;
    expect(backups!.n).toBe(0);
  }, 90_000);

  test("after the retention period the instance is backed up, then torn down", async () => {
    expect(state.instanceId, "needs the instance of the previous steps").not.toBe("");
    h.advance(2 * DAY_MS);
    expect(h.runtime.enqueue(state.subscriptionId)).toBe(true);
    await eventually("instance deprovisioned", async () => (await instanceOf(state.stripeSubscriptionId))?.status === "deprovisioned", 45_000);
    expect(appsOf(state.subdomain).filter((app) => h.sandbox.control.app(app) !== undefined)).toEqual([]);
    expect(existsSync(h.sandbox.control.storageDir(`${state.subdomain}-backend-data`))).toBe(false);
    expect(existsSync(h.sandbox.control.storageDir(`${state.subdomain}-matrix-data`))).toBe(false);

    const backups = await h.db.sql<{ component: string; location: string; sha256: string; size_bytes: string }[]>`
      select component, location, sha256, size_bytes::text as size_bytes from instance_backups
      where instance_id = ${state.instanceId} and backup_type = 'pre_deprovision' and status = 'completed' order by component`;
    expect(backups.map((b) => b.component)).toEqual(["backend", "matrix"]);
    // The journal shows the order: both backups succeeded before anything was destroyed.
    const ops = await h.db.sql<{ action: string; status: string }[]>`
      select action, status::text as status from instance_operations
      where instance_id = ${state.instanceId} and action in ('backup', 'destroyApp', 'destroyStorage') order by id`;
    const firstDestroy = ops.findIndex((op) => op.action !== "backup");
    expect(firstDestroy).toBeGreaterThan(0);
    expect(ops.slice(0, firstDestroy)).toEqual([
      { action: "backup", status: "succeeded" },
      { action: "backup", status: "succeeded" },
    ]);
    expect(ops.slice(firstDestroy).every((op) => op.action !== "backup" && op.status === "succeeded")).toBe(true);
    for (const backup of backups) {
      const bytes = await readFile(join(h.backupDir, "backups", backup.location.replace(/^local:/, "")));
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(backup.sha256);
      expect(bytes.length).toBe(Number(backup.size_bytes));
      const [row] = await h.db.sql<{ id: string }[]>`select id from instance_backups where location = ${backup.location}`;
      const plain = await buffer(await openArchive({ sql: h.db.sql, store: createLocalStore(h.backupDir), masterKey: h.masterKey }, row!.id));
      if (backup.component === "backend") expect(gunzipSync(plain).includes("agents.json"), "the backend data is in its backup").toBe(true);
    }
  }, 90_000);
});
