/**
 * The inbox worker: turns pending `stripe_events` into billing state.
 *
 * Order and concurrency: each pass takes the customers with due events, the customer of the oldest
 * event first, and works on up to `concurrency` customers at once. One customer's events are
 * handled in one transaction holding `pg_try_advisory_xact_lock('stripe_customer:<id>')`, so one
 * customer is never worked on twice at once, even across replicas; its events are handled in
 * arrival order (`received_at`, then id).
 *
 * Outcomes per event: processed; deferred (payload mode, subscription of a customer not known
 * yet: parked for `deferMs` without counting an attempt, woken as soon as the customer event is
 * applied, dead after `maxWaitMs`); failed (attempts+1, retried after a jittered exponential
 * backoff); dead after `maxAttempts` attempts (default 8), with the error, visible in
 * `inboxSummary` and the `mindroom_stripe_inbox_dead` gauge.
 */
import pLimit from "p-limit";
import type { Sql, TransactionSql } from "postgres";

import { coerceError, loggableError } from "../../errors.ts";
import {
  deferEvent,
  dueCustomers,
  inboxSummary,
  lockDueEvents,
  markFailed,
  markProcessed,
  type PendingEvent,
} from "../../state/stripe-events.ts";
import { applyCustomerState, applyEventPayload, fetchCustomerState, payloadHasState, type StripeClient } from "./apply.ts";
import { eventTypeLabel, type PriceTierMap } from "./map.ts";
import type { StripeEventResult, StripeMetrics } from "./metrics.ts";
import type { StripeLogger } from "./webhook.ts";

export interface StripeInboxOptions {
  readonly sql: Sql;
  /** The API client; null or absent = payload mode. */
  readonly stripe?: StripeClient | null;
  readonly priceTiers: PriceTierMap;
  readonly metrics: StripeMetrics;
  readonly logger: StripeLogger;
  readonly concurrency?: number;
  readonly maxAttempts?: number;
  readonly customersPerPass?: number;
  readonly eventsPerCustomer?: number;
  readonly pollIntervalMs?: number;
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  readonly deferMs?: number;
  readonly maxWaitMs?: number;
  readonly now?: () => Date;
}

export const INBOX_DEFAULTS = {
  concurrency: 4,
  maxAttempts: 8,
  customersPerPass: 50,
  eventsPerCustomer: 200,
  pollIntervalMs: 1000,
  backoff: { minMs: 1000, maxMs: 300_000 },
  deferMs: 60_000,
  maxWaitMs: 3 * 24 * 3600 * 1000,
} satisfies Partial<StripeInboxOptions>;

const GAUGE_REFRESH_MS = 5_000;

export interface InboxPassResult {
  readonly customers: number;
  readonly events: number;
  readonly counts: Readonly<Partial<Record<StripeEventResult, number>>>;
}

/** Exponential backoff with ±50% jitter (graphile-worker's calculateDelay). */
export function retryDelayMs(attempt: number, backoff: { minMs: number; maxMs: number }, random: () => number = Math.random): number {
  const base = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.5 + random()));
}

export class StripeInbox {
  private readonly o: Required<Omit<StripeInboxOptions, "stripe">> & { stripe: StripeClient | null };
  private wakeUp: (() => void) | null = null;
  private gaugesAt: number | undefined;

  constructor(options: StripeInboxOptions) {
    if (options.maxAttempts !== undefined && options.maxAttempts < 1) throw new Error("StripeInbox: maxAttempts must be >= 1");
    this.o = { ...INBOX_DEFAULTS, now: () => new Date(), ...options, stripe: options.stripe ?? null };
  }

  get apiMode(): boolean {
    return this.o.stripe !== null;
  }

  /** Ends the idle wait of `start` (the webhook calls this after storing an event). */
  wake(): void {
    this.wakeUp?.();
  }

  /** Runs until `signal` aborts; resolves after the current pass. */
  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let events = 0;
      try {
        events = (await this.processPendingOnce()).events;
      } catch (thrown) {
        this.o.logger.error({ err: loggableError(thrown) }, "stripe inbox pass failed");
      }
      if (events === 0) await this.idle(signal);
    }
  }

  private idle(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.wakeUp = null;
        resolve();
      };
      const timer = setTimeout(done, this.o.pollIntervalMs);
      signal.addEventListener("abort", done, { once: true });
      this.wakeUp = done;
    });
  }

  /** One pass over every customer with due events. Safe to call concurrently with other replicas. */
  async processPendingOnce(): Promise<InboxPassResult> {
    const now = this.o.now();
    const customers = await dueCustomers(this.o.sql, now, this.o.customersPerPass);
    const limit = pLimit(this.o.concurrency);
    const counts: Partial<Record<StripeEventResult, number>> = {};
    const perCustomer = await Promise.all(customers.map((c) => limit(() => this.processCustomer(c, counts))));
    await this.refreshGauges(counts.dead !== undefined);
    return { customers: customers.length, events: perCustomer.reduce((a, b) => a + b, 0), counts };
  }

  private async processCustomer(customer: string, counts: Partial<Record<StripeEventResult, number>>): Promise<number> {
    return this.o.sql.begin(async (tx) => {
      const [lock] = await tx<{ locked: boolean }[]>`
        select set_config('mindroom.actor', 'stripe', true), pg_try_advisory_xact_lock(hashtext(${`stripe_customer:${customer}`})) as locked`;
      if (lock?.locked !== true) return 0;
      const events = await lockDueEvents(tx, customer, this.o.now(), this.o.eventsPerCustomer);
      const record = (event: PendingEvent, result: StripeEventResult): void => {
        counts[result] = (counts[result] ?? 0) + 1;
        this.o.metrics.events.inc({ type: eventTypeLabel(event.type), result });
      };
      if (this.o.stripe !== null && customer !== "") await this.processWithApi(tx, this.o.stripe, customer, events, record);
      else await this.processPayloads(tx, events, record);
      return events.length;
    });
  }

  /** One re-read covers every pending event of the customer (a debounce). */
  private async processWithApi(tx: TransactionSql, stripe: StripeClient, customer: string, events: PendingEvent[], record: Recorder): Promise<void> {
    if (events.length === 0) return;
    try {
      const state = await fetchCustomerState(stripe, customer, this.o.now);
      const source = { via: "stripe-api" as const, eventId: events[events.length - 1]!.id };
      await tx.savepoint((sp) => applyCustomerState(sp, state, this.o.priceTiers, source));
      await markProcessed(tx, events.map((e) => e.id));
      for (const event of events) record(event, "processed");
    } catch (thrown) {
      for (const event of events) await this.fail(tx, event, coerceError(thrown), record);
    }
  }

  /** Each event in a savepoint of its own; the processed ones marked together at the end. */
  private async processPayloads(tx: TransactionSql, events: PendingEvent[], record: Recorder): Promise<void> {
    const processed: string[] = [];
    for (const event of events) {
      try {
        const outcome = payloadHasState(event.type) ? await tx.savepoint((sp) => applyEventPayload(sp, event, this.o.priceTiers)) : await applyEventPayload(tx, event, this.o.priceTiers);
        if (outcome.kind === "deferred") {
          await this.defer(tx, event, outcome.detail, record);
          continue;
        }
        processed.push(event.id);
        record(event, "processed");
        this.o.logger.debug({ eventId: event.id, type: event.type, outcome: outcome.kind, detail: outcome.detail }, "stripe event applied");
      } catch (thrown) {
        await this.fail(tx, event, coerceError(thrown), record);
      }
    }
    await markProcessed(tx, processed);
  }

  private async defer(tx: TransactionSql, event: PendingEvent, reason: string, record: Recorder): Promise<void> {
    const waited = this.o.now().getTime() - event.receivedAt.getTime();
    if (waited >= this.o.maxWaitMs) {
      await markFailed(tx, event.id, `gave up waiting: ${reason}`, null, true);
      record(event, "dead");
      return;
    }
    await deferEvent(tx, event.id, reason, new Date(this.o.now().getTime() + this.o.deferMs));
    record(event, "deferred");
  }

  private async fail(tx: TransactionSql, event: PendingEvent, error: Error, record: Recorder): Promise<void> {
    const attempt = event.attempts + 1;
    const dead = attempt >= this.o.maxAttempts;
    const next = new Date(this.o.now().getTime() + retryDelayMs(attempt, this.o.backoff));
    const safe = loggableError(error);
    await markFailed(tx, event.id, safe.message, dead ? null : next, dead);
    record(event, dead ? "dead" : "failed");
    const log = { eventId: event.id, type: event.type, attempt, err: safe };
    if (dead) this.o.logger.error(log, "stripe event dead: attempts exhausted");
    else this.o.logger.warn(log, "stripe event failed: will retry");
  }

  /**
   * The inbox gauges, from a count over the whole inbox: after the first pass, then at most every
   * `GAUGE_REFRESH_MS` (a pass takes a fraction of a second under load, and the count grows with
   * the table), and at once when a pass marked an event dead.
   */
  private async refreshGauges(sawDead: boolean): Promise<void> {
    const now = performance.now();
    if (!sawDead && this.gaugesAt !== undefined && now - this.gaugesAt < GAUGE_REFRESH_MS) return;
    this.gaugesAt = now;
    const summary = await inboxSummary(this.o.sql);
    this.o.metrics.inboxPending.set(summary.counts.pending);
    this.o.metrics.inboxDead.set(summary.counts.dead);
    const oldest = summary.oldestPendingAt;
    this.o.metrics.inboxOldestPendingSeconds.set(oldest === null ? 0 : Math.max(0, (this.o.now().getTime() - oldest.getTime()) / 1000));
  }
}

type Recorder = (event: PendingEvent, result: StripeEventResult) => void;
