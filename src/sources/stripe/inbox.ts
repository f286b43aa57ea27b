/**
 * The inbox worker: turns pending `stripe_events` into billing state.
 *
 * Order and concurrency: each pass takes the customers with due events, the customer of the oldest
 * event first, splits them into up to `concurrency` batches (at most `customersPerTransaction`
 * customers each; one customer per batch in API mode, whose Stripe reads happen inside the
 * transaction) and works on the batches at once. A batch is one transaction holding
 * `pg_try_advisory_xact_lock('stripe_customer:<id>')` for each of its customers, so one customer
 * is never worked on twice at once, even across replicas; a customer's events are handled in
 * arrival order (`received_at`, then id). A batch costs five statements (begin, locks, events,
 * mark processed, commit) whatever its size, instead of five per customer, and its events are
 * applied without savepoints; in payload mode round by round, the new accounts and subscriptions
 * of many customers in one statement each (apply-sets.ts: 40 sign-ups, 220 events, in 37
 * statements instead of 473). If anything in a batch fails, its customers are retried one per
 * transaction at once with a savepoint per event, so one event's failure never holds up the
 * other events or customers.
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
import { pauseUntil } from "../../pause.ts";
import {
  deferEvent,
  dueCustomers,
  dueEventsOfCustomer,
  dueEventsOfCustomers,
  inboxGauges,
  lockCustomers,
  markFailed,
  markProcessed,
  type PendingEvent,
} from "../../state/stripe-events.ts";
import { applyCustomerState, applyEventPayload, fetchCustomerState, PAYLOAD_EVENT_TYPES, payloadHasState, type StripeClient } from "./apply.ts";
import { applyInRounds } from "./apply-sets.ts";
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
  /**
   * Batches (transactions) worked on at once. Default: 4 in API mode, where each waits on the
   * Stripe API; 1 in payload mode, where one transaction already applies its customers side by
   * side on its connection (processCustomersInRounds) and alone applies as fast as four (6,237
   * against 6,400 events/s for 10,000 sign-up events), while every further one took the other
   * core from the webhook's answers: bench webhook at 500/s, daemon p99 ÷ baseline p99 1.88
   * with 4 and 1.55 with 1 (interleaved rounds, same machine, back to back).
   */
  readonly concurrency?: number;
  readonly maxAttempts?: number;
  readonly customersPerPass?: number;
  /** Payload mode: the most customers one transaction handles. */
  readonly customersPerTransaction?: number;
  readonly eventsPerCustomer?: number;
  readonly pollIntervalMs?: number;
  /**
   * After a pass that handled events but fewer customers than `customersPerPass`, the next pass
   * starts this long after it started (a full pass is followed at once). Events that arrive
   * meanwhile share one pass's statements instead of a pass each: each pass costs about 4.5 ms of
   * CPU (this thread's and its Postgres session's) beyond what its events cost. Default 100 ms:
   * at 500 webhooks/s the worker spent 3.7 s of CPU on 15,000 events where at 25 ms it spent
   * 8.3 s (per-thread CPU from /proc over 30 s), CPU that it takes from the webhook's answers on
   * a small machine. An event waits at most this much longer to be applied. (25 ms had been
   * chosen on bench webhook's p99 ratios, 1.33-1.48 against 1.56-1.59 at 100 ms, in 10 s rounds
   * whose noise, measured since with `--control`, is larger than that difference.) At 2,000/s
   * the worker's CPU per event was the same at either (about 0.2 ms), and so were the answers:
   * two daemons, one at each interval, and the baseline in turn, 12 rounds of 10 s each, gave a
   * median round p99 of 128 ms at 100 ms and 132 ms at 25 ms.
   */
  readonly minPassIntervalMs?: number;
  readonly backoff?: { readonly minMs: number; readonly maxMs: number };
  readonly deferMs?: number;
  readonly maxWaitMs?: number;
  readonly now?: () => Date;
  /** Called each time the worker has nothing due and starts its idle wait (a `wake` ends it). */
  readonly onIdle?: () => void;
}

/** The default `concurrency` of each mode (see the option). */
export const defaultConcurrency = (apiMode: boolean): number => (apiMode ? 4 : 1);

export const INBOX_DEFAULTS = {
  maxAttempts: 8,
  customersPerPass: 50,
  customersPerTransaction: 25,
  eventsPerCustomer: 200,
  pollIntervalMs: 1000,
  minPassIntervalMs: 100,
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
    const stripe = options.stripe ?? null;
    const concurrency = options.concurrency ?? defaultConcurrency(stripe !== null);
    this.o = { ...INBOX_DEFAULTS, now: () => new Date(), onIdle: () => {}, ...options, concurrency, stripe };
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
      const started = performance.now();
      let pass: InboxPassResult | undefined;
      try {
        pass = await this.processPendingOnce();
      } catch (thrown) {
        this.o.logger.error({ err: loggableError(thrown) }, "stripe inbox pass failed");
      }
      if (pass === undefined || pass.events === 0) await this.idle(signal);
      else if (pass.customers < this.o.customersPerPass) await pauseUntil(started + this.o.minPassIntervalMs, signal);
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
      this.o.onIdle();
    });
  }

  /** One pass over every customer with due events. Safe to call concurrently with other replicas. */
  async processPendingOnce(): Promise<InboxPassResult> {
    const now = this.o.now();
    const customers = await dueCustomers(this.o.sql, now, this.o.customersPerPass);
    const limit = pLimit(this.o.concurrency);
    const counts: Partial<Record<StripeEventResult, number>> = {};
    const perBatch = await Promise.all(this.batches(customers).map((batch) => limit(() => this.processBatch(batch, counts))));
    await this.refreshGauges(counts.dead !== undefined);
    return { customers: customers.length, events: perBatch.reduce((a, b) => a + b, 0), counts };
  }

  /** Contiguous slices, so the customers of the oldest events are in the first batch. */
  private batches(customers: string[]): string[][] {
    const size = this.o.stripe !== null ? 1 : Math.min(this.o.customersPerTransaction, Math.ceil(customers.length / this.o.concurrency));
    const batches: string[][] = [];
    for (let i = 0; i < customers.length; i += size) batches.push(customers.slice(i, i + size));
    return batches;
  }

  /**
   * One batch in one transaction; the outcomes are counted once it has committed.
   *
   * The first attempt applies payloads without a savepoint per event (two statements fewer per
   * event, about a third of the batch's statements): the common case, where every event applies,
   * pays nothing for isolation. If anything fails, the transaction rolls back whole and each of
   * its customers is retried in a transaction of its own, `isolated`: each event in a savepoint,
   * so a failing event is recorded as failed and the others of its customer still apply. A
   * failure of an isolated attempt is thrown.
   */
  private async processBatch(customers: string[], counts: Partial<Record<StripeEventResult, number>>, isolated = false): Promise<number> {
    let outcomes: Outcome[];
    try {
      outcomes = await this.o.sql.begin((tx) => this.processLocked(tx, customers, isolated));
    } catch (thrown) {
      if (isolated) throw thrown;
      this.o.logger.debug({ customers: customers.length, err: loggableError(thrown) }, "stripe inbox batch failed: retrying each customer with a savepoint per event");
      let handled = 0;
      for (const customer of customers) {
        handled += await this.processBatch([customer], counts, true).catch((alone: unknown) => {
          this.o.logger.error({ customer, err: loggableError(alone) }, "stripe inbox: a customer's transaction failed; its events stay pending");
          return 0;
        });
      }
      return handled;
    }
    for (const { event, result } of outcomes) {
      counts[result] = (counts[result] ?? 0) + 1;
      this.o.metrics.events.inc({ type: eventTypeLabel(event.type), result });
    }
    return outcomes.length;
  }

  /** Locks the customers it can and handles their due events; marks the processed ones together at the end. */
  private async processLocked(tx: TransactionSql, customers: string[], isolated: boolean): Promise<Outcome[]> {
    const locked = await lockCustomers(tx, customers);
    const named = locked.filter((c) => c !== "");
    const query = { now: this.o.now(), limit: this.o.eventsPerCustomer, payloadTypes: PAYLOAD_EVENT_TYPES };
    const events = named.length > 0 ? await dueEventsOfCustomers(tx, named, query) : new Map<string, PendingEvent[]>();
    if (locked.includes("")) events.set("", await dueEventsOfCustomer(tx, "", query));
    const outcomes: Outcome[] = [];
    const processed: string[] = [];
    const record = (event: PendingEvent, result: StripeEventResult): void => {
      outcomes.push({ event, result });
      if (result === "processed") processed.push(event.id);
    };
    if (this.o.stripe === null && !isolated) await this.processCustomersInRounds(tx, locked, events, record);
    else {
      for (const customer of locked) {
        const due = events.get(customer) ?? [];
        if (this.o.stripe !== null && customer !== "") await this.processWithApi(tx, this.o.stripe, customer, due, record);
        else await this.processPayloads(tx, due, record, isolated);
      }
    }
    await markProcessed(tx, processed);
    return outcomes;
  }

  /**
   * Payload mode, first attempt: the customers' events are applied round by round (apply-sets.ts),
   * the new accounts and subscriptions of a round set-wise, the other events alone, side by side
   * on the transaction's one connection: postgres.js sends the statements issued in the same turn
   * in one write and Postgres runs them in that order. Their rows are distinct; where they are not
   * (e.g. an existing customer taking the email of a new one), a statement fails and the batch is
   * retried isolated, one customer after the other. Every statement has ended before this returns.
   */
  private async processCustomersInRounds(tx: TransactionSql, customers: readonly string[], events: ReadonlyMap<string, PendingEvent[]>, record: Recorder): Promise<void> {
    await applyInRounds(
      tx,
      customers.map((customer) => events.get(customer) ?? []),
      {
        priceTiers: this.o.priceTiers,
        applied: (event, detail) => this.applied(event, "applied", detail, record),
        applyAlone: (event) => this.processPayloads(tx, [event], record, false),
      },
    );
  }

  /** One re-read covers every pending event of the customer (a debounce). */
  private async processWithApi(tx: TransactionSql, stripe: StripeClient, customer: string, events: PendingEvent[], record: Recorder): Promise<void> {
    if (events.length === 0) return;
    try {
      const state = await fetchCustomerState(stripe, customer, this.o.now);
      const source = { via: "stripe-api" as const, eventId: events[events.length - 1]!.id };
      await tx.savepoint((sp) => applyCustomerState(sp, state, this.o.priceTiers, source));
      for (const event of events) record(event, "processed");
    } catch (thrown) {
      for (const event of events) await this.fail(tx, event, coerceError(thrown), record);
    }
  }

  /**
   * Applies the events in order. `isolated`: each event with state in a savepoint of its own, so a
   * failing event is recorded as failed and the others apply. Otherwise in the transaction itself,
   * where the first failure is thrown and aborts it (processBatch then retries isolated).
   */
  private async processPayloads(tx: TransactionSql, events: PendingEvent[], record: Recorder, isolated: boolean): Promise<void> {
    for (const event of events) {
      try {
        const outcome =
          isolated && payloadHasState(event.type) ? await tx.savepoint((sp) => applyEventPayload(sp, event, this.o.priceTiers)) : await applyEventPayload(tx, event, this.o.priceTiers);
        if (outcome.kind === "deferred") {
          await this.defer(tx, event, outcome.detail, record);
          continue;
        }
        this.applied(event, outcome.kind, outcome.detail, record);
      } catch (thrown) {
        if (!isolated) throw thrown;
        await this.fail(tx, event, coerceError(thrown), record);
      }
    }
  }

  private applied(event: PendingEvent, outcome: "applied" | "skipped", detail: string, record: Recorder): void {
    record(event, "processed");
    this.o.logger.debug({ eventId: event.id, type: event.type, outcome, detail }, "stripe event applied");
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
    const gauges = await inboxGauges(this.o.sql);
    this.o.metrics.inboxPending.set(gauges.pending);
    this.o.metrics.inboxDead.set(gauges.dead);
    const oldest = gauges.oldestPendingAt;
    this.o.metrics.inboxOldestPendingSeconds.set(oldest === null ? 0 : Math.max(0, (this.o.now().getTime() - oldest.getTime()) / 1000));
  }
}

type Recorder = (event: PendingEvent, result: StripeEventResult) => void;
type Outcome = { readonly event: PendingEvent; readonly result: StripeEventResult };
