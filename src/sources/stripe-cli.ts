/**
 * `mindroom-reconciler stripe ...`: operator commands of the Stripe source.
 *
 *   stripe sync [--customer ID]
 *       Re-read from the Stripe API now: one customer, or every customer with a subscription
 *       (the daily sweep). Needs STRIPE_API_KEY (exit 2 otherwise) and the database.
 *   stripe send TRIGGER [--customer ID] [--subscription ID] [--tier T] [--email E] [--url URL]
 *       Like `stripe trigger` of the Stripe CLI, offline: builds the events Stripe would send for
 *       TRIGGER (complete current-API payloads, price lookup_key `<tier>_monthly` and
 *       metadata.tier), signs each with the first STRIPE_WEBHOOK_SECRET and POSTs it to a running
 *       daemon (default http://127.0.0.1:$PORT/webhooks/stripe), printing each event id and answer.
 *
 * Exit codes: 0 success, 1 some request or customer failed, 2 usage or configuration error.
 */
import { parseArgs } from "node:util";

import type { Sql } from "postgres";
import { Registry } from "prom-client";
import Stripe from "stripe";

import { coerceError } from "../errors.ts";
import { TIERS } from "../reconciler/types.ts";
import type { StripeClient } from "./stripe-apply.ts";
import { sweepSubscriptions, syncCustomer } from "./stripe-catchup.ts";
import { createStripeMetrics } from "./stripe-metrics.ts";
import { type JsonObject, PAID_TIERS, type PaidTier } from "./stripe-objects.ts";
import { StripeSim } from "./stripe-sim.ts";
import { createStripeClient, type StripeConfig } from "./stripe-sources.ts";

export interface StripeCliDeps {
  /** Needed by `sync` only. */
  readonly sql?: Sql;
  readonly config: { readonly port: number; readonly stripe: StripeConfig };
  /** Overrides the client built from the config (tests). */
  readonly stripeClient?: StripeClient | null;
  readonly stdout?: { write(text: string): unknown };
  readonly stderr?: { write(text: string): unknown };
}

export const SEND_TRIGGERS = [
  "customer.created",
  "customer.subscription.created",
  "customer.subscription.updated",
  "customer.subscription.deleted",
  "customer.subscription.paused",
  "customer.subscription.resumed",
  "invoice.payment_failed",
  "invoice.paid",
] as const;
type Trigger = (typeof SEND_TRIGGERS)[number];

const USAGE = `usage: mindroom-reconciler stripe sync [--customer ID]
       mindroom-reconciler stripe send TRIGGER [--customer ID] [--subscription ID] [--tier TIER] [--email EMAIL] [--url URL]
triggers: ${SEND_TRIGGERS.join(", ")}
`;

export async function run(argv: string[], deps: StripeCliDeps): Promise<number> {
  const out = deps.stdout ?? process.stdout;
  const err = deps.stderr ?? process.stderr;
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { customer: { type: "string" }, subscription: { type: "string" }, tier: { type: "string" }, email: { type: "string" }, url: { type: "string" } },
    });
  } catch (thrown) {
    err.write(`${coerceError(thrown).message}\n${USAGE}`);
    return 2;
  }
  const [command, trigger, ...extra] = parsed.positionals;
  if (command === "sync" && trigger === undefined) return sync(parsed.values.customer, deps, out, err);
  if (command === "send" && trigger !== undefined && extra.length === 0) return send(trigger, parsed.values, deps, out, err);
  err.write(USAGE);
  return 2;
}

async function sync(customer: string | undefined, deps: StripeCliDeps, out: Writer, err: Writer): Promise<number> {
  const stripe = deps.stripeClient === undefined ? createStripeClient(deps.config.stripe) : deps.stripeClient;
  if (stripe === null) {
    err.write("stripe sync needs STRIPE_API_KEY (a secret or restricted key with read access to customers, subscriptions and events)\n");
    return 2;
  }
  if (deps.sql === undefined) {
    err.write("stripe sync needs the database\n");
    return 2;
  }
  const o = { sql: deps.sql, stripe, priceTiers: deps.config.stripe.priceTiers };
  try {
    if (customer !== undefined) {
      const r = await syncCustomer(o, customer);
      out.write(`customer ${customer}: ${r.subscriptions} subscription(s), ${r.changed} changed\n`);
      return 0;
    }
    const silent = { info: () => {}, warn: (obj: object, msg?: string) => err.write(`${msg ?? ""} ${JSON.stringify(obj)}\n`), error: () => {}, debug: () => {} };
    const r = await sweepSubscriptions({ ...o, metrics: createStripeMetrics(new Registry()), logger: silent });
    out.write(`${r.customers} customer(s) synced, ${r.changed} subscription(s) changed, ${r.failed} failed\n`);
    return r.failed > 0 ? 1 : 0;
  } catch (thrown) {
    err.write(`stripe sync failed: ${coerceError(thrown).message}\n`);
    return 1;
  }
}

type Writer = { write(text: string): unknown };
type SendFlags = { customer?: string | undefined; subscription?: string | undefined; tier?: string | undefined; email?: string | undefined; url?: string | undefined };

async function send(trigger: string, flags: SendFlags, deps: StripeCliDeps, out: Writer, err: Writer): Promise<number> {
  if (!(SEND_TRIGGERS as readonly string[]).includes(trigger)) {
    err.write(`unknown trigger ${trigger}\n${USAGE}`);
    return 2;
  }
  const tier = flags.tier ?? "starter";
  if (!(PAID_TIERS as readonly string[]).includes(tier)) {
    err.write(`--tier must be one of ${TIERS.filter((t) => t !== "free").join(", ")}\n`);
    return 2;
  }
  const secret = deps.config.stripe.webhookSecrets[0];
  if (!secret) {
    err.write("stripe send needs STRIPE_WEBHOOK_SECRET (the daemon's secret) to sign the events\n");
    return 2;
  }
  const url = flags.url ?? `http://127.0.0.1:${deps.config.port}/webhooks/stripe`;
  let events: JsonObject[];
  try {
    events = scenario(trigger as Trigger, tier as PaidTier, flags);
  } catch (thrown) {
    err.write(`${coerceError(thrown).message}\n`);
    return 2;
  }
  let failed = 0;
  for (const event of events) {
    const body = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret });
    try {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body });
      out.write(`${String(event.id)} ${String(event.type)} -> ${res.status} ${await res.text()}\n`);
      if (!res.ok) failed += 1;
    } catch (thrown) {
      failed += 1;
      out.write(`${String(event.id)} ${String(event.type)} -> ${coerceError(thrown).message}\n`);
    }
  }
  return failed > 0 ? 1 : 0;
}

/**
 * The events of one trigger, in Stripe's order. `--customer` / `--subscription` target existing
 * objects: they are adopted silently (no creation events) and only the trigger's events are sent.
 */
export function scenario(trigger: Trigger, tier: PaidTier, flags: SendFlags, clock: () => number = () => Math.floor(Date.now() / 1000)): JsonObject[] {
  const sim = new StripeSim(clock);
  const email = flags.email ?? `stripe-send-${sim.prefix}@example.com`;
  const customer = flags.customer ?? sim.createCustomer({ email, name: "stripe send" });
  if (flags.customer !== undefined) adopt(sim, () => sim.createCustomer({ email, id: flags.customer! }));
  if (trigger === "customer.created") return sim.events.slice();
  const withSubscription = (options: { trialDays?: number; tier?: PaidTier } = {}): string => {
    if (flags.subscription !== undefined) {
      return adopt(sim, () => sim.createSubscription({ customer, tier: options.tier ?? tier, id: flags.subscription!, ...(options.trialDays ? { trialDays: options.trialDays } : {}) }));
    }
    return sim.createSubscription({ customer, tier: options.tier ?? tier, ...(options.trialDays ? { trialDays: options.trialDays } : {}) });
  };
  switch (trigger) {
    case "customer.subscription.created":
      withSubscription();
      break;
    case "customer.subscription.updated":
      sim.changeTier(withSubscription({ tier: tier === "starter" ? "professional" : "starter" }), tier);
      break;
    case "customer.subscription.deleted":
      sim.cancelNow(withSubscription());
      break;
    case "customer.subscription.paused":
      sim.endTrial(withSubscription({ trialDays: 14 }), { paid: false });
      break;
    case "customer.subscription.resumed": {
      const sub = withSubscription({ trialDays: 14 });
      sim.endTrial(sub, { paid: false });
      sim.resume(sub);
      break;
    }
    case "invoice.payment_failed":
      sim.failPayment(withSubscription());
      break;
    case "invoice.paid":
      sim.renew(withSubscription());
      break;
  }
  return sim.events.slice();
}

/** Runs `create` and forgets the events it emitted (the object exists already at Stripe). */
function adopt<T>(sim: StripeSim, create: () => T): T {
  const before = sim.events.length;
  const result = create();
  sim.events.splice(before);
  return result;
}
