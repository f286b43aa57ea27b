/**
 * Catch-up (API mode only): what the webhook never received still arrives.
 *
 * - Events: every `intervalMs` (default 3 min, jittered), `events.list({ created: { gte: cursor -
 *   overlap } })`, where cursor is the start of the previous successful listing (at start-up: the
 *   newest `created` in the inbox, or now - `lookbackMs` for an empty inbox). Every listed event goes through the same `ON CONFLICT DO NOTHING` insert as the
 *   webhook, so the overlap is free and duplicates are impossible.
 * - Sweep: every `sweepIntervalMs` (default 24 h), `subscriptions.list({ status: 'all' })` over all
 *   customers; each customer seen is re-read and applied like an inbox event
 *   (`syncCustomer`), which also repairs state changed without any event.
 */
import type { Sql } from "postgres";

import { coerceError } from "../../errors.ts";
import { pause } from "../../pause.ts";
import type { Db } from "../../state/sql.ts";
import { insertStripeEvent, newestEventCreated } from "../../state/stripe-events.ts";
import { applyCustomerState, fetchCustomerState, type StripeClient } from "./apply.ts";
import { eventTypeLabel, inboxRow, type PriceTierMap, stripeEventSchema } from "./map.ts";
import type { StripeMetrics } from "./metrics.ts";
import type { StripeLogger } from "./webhook.ts";

export interface StripeCatchupOptions {
  readonly sql: Sql;
  readonly stripe: StripeClient;
  readonly priceTiers: PriceTierMap;
  readonly metrics: StripeMetrics;
  readonly logger: StripeLogger;
  readonly intervalMs?: number;
  readonly overlapSeconds?: number;
  readonly lookbackMs?: number;
  readonly sweepIntervalMs?: number;
  readonly now?: () => Date;
  /** Called when catch-up stored new events (e.g. `inbox.wake`). */
  readonly onStored?: () => void;
}

export const CATCHUP_DEFAULTS = {
  intervalMs: 3 * 60_000,
  overlapSeconds: 300,
  lookbackMs: 3 * 24 * 3600_000,
  sweepIntervalMs: 24 * 3600_000,
} satisfies Partial<StripeCatchupOptions>;

/**
 * Lists events created at or after `since` minus the overlap (default: the newest `created` in the
 * inbox, or now - `lookbackMs` for an empty inbox) and stores the new ones.
 */
export async function catchUpEvents(o: StripeCatchupOptions, since?: Date): Promise<{ stored: number; listed: number }> {
  const now = (o.now ?? (() => new Date()))();
  const cursor = since ?? (await newestEventCreated(o.sql)) ?? new Date(now.getTime() - (o.lookbackMs ?? CATCHUP_DEFAULTS.lookbackMs));
  const gte = Math.floor(cursor.getTime() / 1000) - (o.overlapSeconds ?? CATCHUP_DEFAULTS.overlapSeconds);
  let stored = 0;
  let listed = 0;
  for await (const raw of o.stripe.events.list({ created: { gte }, limit: 100 })) {
    listed += 1;
    if (await storeListedEvent(o.sql, raw, o.metrics)) stored += 1;
  }
  if (stored > 0) {
    o.logger.info({ stored, since: new Date(gte * 1000).toISOString() }, "stripe catch-up stored events the webhook had not delivered");
    o.onStored?.();
  }
  return { stored, listed };
}

async function storeListedEvent(sql: Db, raw: unknown, metrics: StripeMetrics): Promise<boolean> {
  const event = stripeEventSchema.parse(raw);
  const inserted = await insertStripeEvent(sql, inboxRow(event, JSON.stringify(raw)));
  if (inserted) metrics.events.inc({ type: eventTypeLabel(event.type), result: "caught_up" });
  return inserted;
}

/** Re-reads one customer from the API and applies it now, serialised with the inbox worker. */
export async function syncCustomer(o: Pick<StripeCatchupOptions, "sql" | "stripe" | "priceTiers" | "now">, customerId: string): Promise<{ subscriptions: number; changed: number }> {
  const now = o.now ?? (() => new Date());
  return o.sql.begin(async (tx) => {
    await tx`select set_config('mindroom.actor', 'stripe', true)`;
    await tx`select pg_advisory_xact_lock(hashtext(${`stripe_customer:${customerId}`}))`;
    const state = await fetchCustomerState(o.stripe, customerId, now);
    const applied = await applyCustomerState(tx, state, o.priceTiers, { via: "stripe-api", eventId: null });
    return { subscriptions: applied.subscriptions, changed: applied.changed };
  });
}

/** Every customer with a subscription (any status), each re-read and applied. Failures are logged and counted. */
export async function sweepSubscriptions(o: StripeCatchupOptions): Promise<{ customers: number; changed: number; failed: number }> {
  const customers = new Set<string>();
  for await (const sub of o.stripe.subscriptions.list({ status: "all", limit: 100 })) {
    customers.add(typeof sub.customer === "string" ? sub.customer : sub.customer.id);
  }
  let changed = 0;
  let failed = 0;
  for (const customer of customers) {
    try {
      changed += (await syncCustomer(o, customer)).changed;
    } catch (thrown) {
      failed += 1;
      o.logger.warn({ customer, err: coerceError(thrown) }, "stripe sweep: customer not synced");
    }
  }
  return { customers: customers.size, changed, failed };
}

/** The catch-up loop: events every `intervalMs`, the sweep every `sweepIntervalMs` (first one at start). */
export async function runCatchup(o: StripeCatchupOptions, signal: AbortSignal): Promise<void> {
  const intervalMs = o.intervalMs ?? CATCHUP_DEFAULTS.intervalMs;
  const sweepIntervalMs = o.sweepIntervalMs ?? CATCHUP_DEFAULTS.sweepIntervalMs;
  let nextSweep = 0;
  // The first listing starts from the inbox (what arrived before a restart); later ones from the
  // start of the previous successful listing, so a dropped event older than newer deliveries is
  // still listed.
  let since: Date | undefined;
  while (!signal.aborted) {
    const startedAt = (o.now ?? (() => new Date()))();
    if (await guarded(o.logger, "stripe catch-up failed", () => catchUpEvents(o, since))) since = startedAt;
    if (Date.now() >= nextSweep && !signal.aborted) {
      const done = await guarded(o.logger, "stripe sweep failed", () => sweepSubscriptions(o));
      // A failed sweep is retried at the next interval, not a day later (stripe/sync-engine#300).
      nextSweep = Date.now() + (done ? sweepIntervalMs : intervalMs);
    }
    await pause(intervalMs * (0.75 + Math.random() / 2), signal);
  }
}

async function guarded<T>(logger: StripeLogger, message: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (thrown) {
    logger.warn({ err: coerceError(thrown) }, message);
    return undefined;
  }
}
