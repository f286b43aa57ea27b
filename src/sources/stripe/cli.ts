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
 *       daemon (default http://127.0.0.1:$PORT/webhooks/stripe), printing each event id and answer,
 *       then the customer and subscription ids used (for the next command's --customer and
 *       --subscription). A follow-up on an existing --subscription keeps its current tier (read
 *       from the database) unless --tier is given; a new subscription defaults to starter.
 *
 * Exit codes: 0 success, 1 some request or customer failed, 2 usage or configuration error.
 */
import { parseArgs } from "node:util";

import type { Sql } from "postgres";
import { Registry } from "prom-client";
import Stripe from "stripe";

import { coerceError } from "../../errors.ts";
import { TIERS } from "../../reconciler/types.ts";
import type { StripeClient } from "./apply.ts";
import { sweepSubscriptions, syncCustomer } from "./catchup.ts";
import { createStripeMetrics } from "./metrics.ts";
import { type JsonObject, PAID_TIERS, type PaidTier } from "./objects.ts";
import { StripeSim } from "./sim.ts";
import { createStripeClient, type StripeConfig } from "./sources.ts";

export interface StripeCliDeps {
  /** Needed by `sync` only. */
  readonly sql?: Sql;
  readonly config: { readonly port: number; readonly stripe: StripeConfig };
  /** Overrides the client built from the config (tests). */
  readonly stripeClient?: StripeClient | null;
  readonly stdout?: { write(text: string): unknown };
  readonly stderr?: { write(text: string): unknown };
  /** `send --subscription` without `--tier`: the subscription's tier as the database holds it. */
  readonly currentTier?: (stripeSubscriptionId: string) => Promise<string | undefined>;
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
--tier: starter (default for a new subscription), professional, enterprise; a follow-up on --subscription keeps its current tier
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
const POST_TIMEOUT_MS = 10_000;

async function send(trigger: string, flags: SendFlags, deps: StripeCliDeps, out: Writer, err: Writer): Promise<number> {
  if (!(SEND_TRIGGERS as readonly string[]).includes(trigger)) {
    err.write(`unknown trigger ${trigger}\n${USAGE}`);
    return 2;
  }
  const tiers = await tiersFor(flags, deps);
  if ("error" in tiers) {
    err.write(`${tiers.error}\n`);
    return 2;
  }
  const secret = deps.config.stripe.webhookSecrets[0];
  if (!secret) {
    err.write("stripe send needs STRIPE_WEBHOOK_SECRET (the daemon's secret) to sign the events\n");
    return 2;
  }
  let events: JsonObject[];
  try {
    events = scenario(trigger as Trigger, tiers.tier, { ...flags, ...(tiers.current ? { currentTier: tiers.current } : {}) });
  } catch (thrown) {
    err.write(`${coerceError(thrown).message}\n`);
    return 2;
  }
  const failed = await post(events, flags.url ?? `http://127.0.0.1:${deps.config.port}/webhooks/stripe`, secret, out);
  const ids = scenarioIds(events, flags);
  out.write(`customer ${ids.customer ?? "-"}${ids.subscription ? ` subscription ${ids.subscription}` : ""}\n`);
  return failed > 0 ? 1 : 0;
}

/** The tier to send, and the adopted subscription's current tier (follow-ups keep it). */
async function tiersFor(flags: SendFlags, deps: StripeCliDeps): Promise<{ tier: PaidTier; current?: PaidTier } | { error: string }> {
  const paid = (t: string | undefined): t is PaidTier => t !== undefined && (PAID_TIERS as readonly string[]).includes(t);
  if (flags.tier !== undefined && !paid(flags.tier)) return { error: `--tier must be one of ${TIERS.filter((t) => t !== "free").join(", ")}` };
  if (flags.subscription === undefined) return { tier: flags.tier ?? "starter" };
  const current = await deps.currentTier?.(flags.subscription);
  if (!paid(current)) {
    if (flags.tier !== undefined) return { tier: flags.tier };
    return { error: `subscription ${flags.subscription} is not in the database, so its current tier is unknown: give --tier` };
  }
  return { tier: flags.tier ?? current, current };
}

async function post(events: readonly JsonObject[], url: string, secret: string, out: Writer): Promise<number> {
  let failed = 0;
  for (const event of events) {
    const body = JSON.stringify(event);
    const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret });
    try {
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body, signal: AbortSignal.timeout(POST_TIMEOUT_MS) });
      out.write(`${String(event.id)} ${String(event.type)} -> ${res.status} ${await res.text()}\n`);
      if (!res.ok) failed += 1;
    } catch (thrown) {
      failed += 1;
      out.write(`${String(event.id)} ${String(event.type)} -> ${coerceError(thrown).message}\n`);
    }
  }
  return failed;
}

/** The customer and subscription the events concern (the adopted ones when given). Pure. */
export function scenarioIds(events: readonly JsonObject[], flags: SendFlags): { customer?: string; subscription?: string } {
  let customer = flags.customer;
  let subscription = flags.subscription;
  for (const event of events) {
    const object = (event.data as { object?: { object?: unknown; id?: unknown; customer?: unknown } } | undefined)?.object;
    if (object?.object === "customer" && typeof object.id === "string") customer ??= object.id;
    if (object?.object === "subscription" && typeof object.id === "string") {
      subscription ??= object.id;
      if (typeof object.customer === "string") customer ??= object.customer;
    }
  }
  return { ...(customer ? { customer } : {}), ...(subscription ? { subscription } : {}) };
}

/**
 * The events of one trigger, in Stripe's order. `--customer` / `--subscription` target existing
 * objects: they are adopted silently (no creation events) and only the trigger's events are sent.
 */
export function scenario(trigger: Trigger, tier: PaidTier, flags: SendFlags & { currentTier?: PaidTier }, clock: () => number = () => Math.floor(Date.now() / 1000)): JsonObject[] {
  const sim = new StripeSim(clock);
  const email = flags.email ?? `stripe-send-${sim.prefix}@example.com`;
  const customer = flags.customer ?? sim.createCustomer({ email, name: "stripe send" });
  if (flags.customer !== undefined) adopt(sim, () => sim.createCustomer({ email, id: flags.customer! }));
  if (trigger === "customer.created") return sim.events.slice();
  const withSubscription = (options: { trialDays?: number; tier?: PaidTier } = {}): string => {
    if (flags.subscription !== undefined) {
      return adopt(sim, () => sim.createSubscription({ customer, tier: options.tier ?? flags.currentTier ?? tier, id: flags.subscription!, ...(options.trialDays ? { trialDays: options.trialDays } : {}) }));
    }
    return sim.createSubscription({ customer, tier: options.tier ?? tier, ...(options.trialDays ? { trialDays: options.trialDays } : {}) });
  };
  switch (trigger) {
    case "customer.subscription.created":
      withSubscription();
      break;
    case "customer.subscription.updated": {
      const from = flags.currentTier ?? (tier === "starter" ? "professional" : "starter");
      if (from === tier) throw new Error(`subscription ${flags.subscription ?? ""} is already ${tier}: give --tier with another tier`);
      sim.changeTier(withSubscription({ tier: from }), tier);
      break;
    }
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
