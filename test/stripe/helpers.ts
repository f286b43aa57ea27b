/** Shared wiring for the Stripe tests: a webhook server on loopback, metrics, a silent logger. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import type { Sql } from "postgres";
import { Registry } from "prom-client";

import { createStripeWebhookHandler, type StripeLogger, type StripeWebhookDeps } from "../../src/sources/stripe.ts";
import { createStripeMetrics, type StripeMetrics } from "../../src/sources/stripe-metrics.ts";

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
