/** Shared wiring for the Stripe tests: a webhook server on loopback, metrics, a silent logger. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import type { Sql } from "postgres";
import { Registry } from "prom-client";
import { afterAll, beforeAll, beforeEach } from "vitest";

import { inboxRow, stripeEventSchema } from "../../src/sources/stripe/map.ts";
import { createStripeMetrics, type StripeMetrics } from "../../src/sources/stripe/metrics.ts";
import { createStripeWebhookHandler, type StripeLogger, type StripeWebhookDeps } from "../../src/sources/stripe/webhook.ts";
import type { Db } from "../../src/state/sql.ts";
import { insertStripeEvent } from "../../src/state/stripe-events.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

export const SECRET = "whsec_test_current";
export const OLD_SECRET = "whsec_test_previous";

export const silentLogger: StripeLogger = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

export function newMetrics(): { registry: Registry; metrics: StripeMetrics } {
  const registry = new Registry();
  return { registry, metrics: createStripeMetrics(registry) };
}

export interface WebhookServer {
  readonly url: string;
  readonly metrics: StripeMetrics;
  readonly registry: Registry;
  close(): Promise<void>;
}

export async function startWebhookServer(sql: Sql, overrides: Partial<StripeWebhookDeps> = {}): Promise<WebhookServer> {
  const { registry, metrics } = newMetrics();
  const handler = createStripeWebhookHandler({ sql, secrets: [SECRET, OLD_SECRET], metrics, logger: silentLogger, ...overrides });
  const server: Server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/webhooks/stripe`,
    metrics,
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function counterValue(registry: Registry, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric("mindroom_stripe_events_total")?.get();
  const match = metric?.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return match?.value ?? 0;
}

/** Stores events as the webhook would (same insert, same keys), without HTTP. Returns how many were new. */
export async function ingest(sql: Db, events: readonly Record<string, unknown>[]): Promise<number> {
  let inserted = 0;
  for (const raw of events) {
    const event = stripeEventSchema.parse(raw);
    const isNew = await insertStripeEvent(sql, inboxRow(event, JSON.stringify(raw)));
    if (isNew) inserted += 1;
  }
  return inserted;
}

export interface SubscriptionRowView {
  status: string;
  tier: string;
  stripe_price_id: string | null;
  cancel_at_period_end: boolean;
  canceled_at: Date | null;
  trial_ends_at: Date | null;
  current_period_start: Date | null;
  current_period_end: Date | null;
  past_due_since: Date | null;
  max_agents: number | null;
}

export async function subscriptionRow(sql: Sql, stripeSubscriptionId: string): Promise<SubscriptionRowView | undefined> {
  const rows = await sql<SubscriptionRowView[]>`
    select status, tier, stripe_price_id, cancel_at_period_end, canceled_at, trial_ends_at,
           current_period_start, current_period_end, past_due_since, max_agents
    from subscriptions where stripe_subscription_id = ${stripeSubscriptionId}`;
  return rows[0];
}

/**
 * A database of its own for the calling test file, handed to `use` once created, its inbox emptied
 * before each test, dropped after the file. Call at the file's top level.
 */
export function inboxDatabasePerFile(use: (db: TestDatabase) => void): void {
  let db: TestDatabase | undefined;
  beforeAll(async () => {
    db = await createTestDatabase();
    use(db);
  });
  afterAll(async () => {
    await db?.drop();
  });
  beforeEach(async () => {
    await db!.sql`delete from stripe_events`;
  });
}
