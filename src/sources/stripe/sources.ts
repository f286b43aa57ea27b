/**
 * Wiring of the Stripe source for src/main.ts: the webhook handler, the inbox worker and (with an
 * API key) the catch-up loop, from the parsed configuration.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import type { Sql } from "postgres";
import Stripe from "stripe";

import { describeMode, payloadHasState, type StripeClient } from "./apply.ts";
import { runCatchup, type StripeCatchupOptions } from "./catchup.ts";
import { StripeInbox, type StripeInboxOptions } from "./inbox.ts";
import { type InboxThreadConfig, startInboxThread } from "./inbox-thread.ts";
import type { PriceTierMap } from "./map.ts";
import type { StripeMetrics } from "./metrics.ts";
import { STRIPE_API_VERSION } from "./objects.ts";
import { createStripeWebhookHandler, type StripeLogger } from "./webhook.ts";

/** The `stripe` part of src/config.ts's Config. */
export interface StripeConfig {
  readonly webhookSecrets: readonly string[];
  readonly apiKey: string | undefined;
  readonly apiBase: string | undefined;
  readonly priceTiers: PriceTierMap;
}

/** The stripe-node client, or null without an API key. `apiBase` (e.g. http://127.0.0.1:12111) points it at a fake. */
export function createStripeClient(config: Pick<StripeConfig, "apiKey" | "apiBase">): Stripe | null {
  if (!config.apiKey) return null;
  const base = config.apiBase ? new URL(config.apiBase) : null;
  const protocol = base?.protocol === "http:" ? "http" : "https";
  const options: Stripe.StripeConfig = { maxNetworkRetries: 2, timeout: 30_000, telemetry: false };
  options.apiVersion = STRIPE_API_VERSION as NonNullable<Stripe.StripeConfig["apiVersion"]>;
  if (base) {
    options.host = base.hostname;
    options.port = Number(base.port || (protocol === "http" ? 80 : 443));
    options.protocol = protocol;
  }
  return new Stripe(config.apiKey, options);
}

export interface StripeSourcesDeps {
  readonly sql: Sql;
  /**
   * The webhook's inserts go through this pool when set (the daemon gives it a small one of its
   * own), so that a burst of webhooks queues there instead of taking the controller's connections.
   */
  readonly webhookSql?: Sql;
  readonly config: { readonly stripe: StripeConfig; readonly dbRequestTimeoutMs?: number };
  /** Overrides the client built from the config (tests). null forces payload mode. */
  readonly stripeClient?: StripeClient | null;
  readonly metrics: StripeMetrics;
  readonly logger: StripeLogger;
  readonly inbox?: Partial<StripeInboxOptions>;
  readonly catchup?: Partial<StripeCatchupOptions>;
  /**
   * Runs the inbox worker on a thread of its own with these connection settings (the daemon),
   * instead of on the caller's event loop; `onFatal` is called if that thread dies. Ignores
   * `inbox` and `stripeClient` (the thread builds its client from `config.stripe`).
   */
  readonly thread?: Omit<InboxThreadConfig, "stripe" | "debug"> & { readonly debug: boolean; readonly onFatal: (reason: string) => void };
}

export interface StripeSources {
  /** `POST /webhooks/stripe`; null when no webhook secret is configured (answer 404/503 then). */
  readonly webhook: ((req: IncomingMessage, res: ServerResponse) => Promise<void>) | null;
  readonly apiMode: boolean;
  /** Resolves when the worker and the catch-up loop have stopped (after `signal` aborts). */
  readonly done: Promise<void>;
}

/** Starts the inbox worker (and catch-up with an API key) until `signal` aborts; logs the mode once. */
export function startStripeSources(deps: StripeSourcesDeps, signal: AbortSignal): StripeSources {
  const { sql, metrics, logger } = deps;
  const stripe = deps.stripeClient === undefined ? createStripeClient(deps.config.stripe) : deps.stripeClient;
  const priceTiers = deps.config.stripe.priceTiers;
  const inbox = startInbox(deps, stripe, signal);
  const webhook =
    deps.config.stripe.webhookSecrets.length > 0
      ? createStripeWebhookHandler({
          sql: deps.webhookSql ?? sql,
          secrets: deps.config.stripe.webhookSecrets,
          metrics,
          logger,
          onStored: inbox.wake,
          ...(stripe === null ? { actedOn: payloadHasState } : {}),
          ...(deps.config.dbRequestTimeoutMs === undefined ? {} : { requestTimeoutMs: deps.config.dbRequestTimeoutMs }),
        })
      : null;
  logger.info({ apiMode: stripe !== null, webhook: webhook !== null, inboxThread: deps.thread !== undefined }, describeMode(stripe !== null));
  const loops: Promise<void>[] = [inbox.done];
  if (stripe !== null) {
    loops.push(runCatchup({ sql, stripe, priceTiers, metrics, logger, onStored: inbox.wake, ...deps.catchup }, signal));
  }
  return { webhook, apiMode: stripe !== null, done: Promise.all(loops).then(() => undefined) };
}

/** The inbox worker, on its own thread or on this event loop, until `signal` aborts. */
function startInbox(deps: StripeSourcesDeps, stripe: StripeClient | null, signal: AbortSignal): { wake: () => void; done: Promise<void> } {
  const { sql, metrics, logger, thread } = deps;
  if (thread === undefined) {
    const inbox = new StripeInbox({ sql, stripe, priceTiers: deps.config.stripe.priceTiers, metrics, logger, ...deps.inbox });
    return { wake: () => inbox.wake(), done: inbox.start(signal) };
  }
  const { onFatal, ...settings } = thread;
  const { apiKey, apiBase, priceTiers } = deps.config.stripe;
  const started = startInboxThread({ ...settings, stripe: { apiKey, apiBase, priceTiers } }, { metrics, logger, onFatal });
  const done = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(started.stop()), { once: true }));
  return { wake: started.wake, done };
}
