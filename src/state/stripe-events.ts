/**
 * The Stripe webhook inbox (`stripe_events`). The event id is the key: every insert is
 * `ON CONFLICT DO NOTHING`, so a duplicate delivery or a catch-up overlap changes nothing.
 *
 * Status transitions (owned by the inbox worker, src/sources/stripe/inbox.ts):
 *   pending ──processed──► processed
 *   pending ──deferred───► pending (next_attempt_at later, attempts unchanged: waiting for its customer)
 *   pending ──failed─────► pending (attempts+1, next_attempt_at = backoff)  or  dead (after N attempts)
 *   (insert of a type the controller does not handle) ► ignored
 */
import type { TransactionSql } from "postgres";

import type { Db } from "./sql.ts";

export type StripeEventStatus = "pending" | "processed" | "failed" | "dead" | "ignored";

export interface NewStripeEvent {
  readonly id: string;
  readonly type: string;
  readonly objectId: string | null;
  readonly customerId: string | null;
  /** The event's own `created` (seconds precision). */
  readonly created: Date;
  readonly apiVersion: string | null;
  readonly livemode: boolean | null;
  /** The event JSON exactly as received (stored as jsonb). */
  readonly payloadJson: string;
  readonly status: "pending" | "ignored";
}

/** Inserts one event; true when it is new, false for a duplicate id. */
export async function insertStripeEvent(sql: Db, event: NewStripeEvent): Promise<boolean> {
  return (await insertStripeEvents(sql, [event])).has(event.id);
}

/**
 * Inserts many events in one statement, one transaction: the ids returned are those that were
 * new; a duplicate (already stored, or twice in `events`) is not among them. If any row cannot be
 * stored (a data exception), none is. The statement's text, and its prepared plan, is the same
 * whatever the number of rows: the columns go in as text arrays cast in SQL, and the payloads as
 * one JSON array, `payloadArray`, which Postgres parses once into jsonb and splits by position.
 */
export async function insertStripeEvents(sql: Db, events: readonly NewStripeEvent[]): Promise<Set<string>> {
  if (events.length === 0) return new Set();
  const column = <T>(pick: (event: NewStripeEvent) => T): T[] => events.map(pick);
  // A full join: a payload array with more or fewer elements than rows leaves a row without an id
  // or a payload, which the not-null constraints refuse, so no payload is stored with another id.
  const rows = await sql<{ id: string }[]>`
    insert into stripe_events (id, type, api_version, livemode, object_id, customer_id, created, payload, status, processed_at)
    select e.id, e.type, e.api_version, e.livemode::boolean, e.object_id, e.customer_id, e.created::timestamptz, p.payload,
           e.status::public.stripe_event_status, case when e.status = 'ignored' then now() end
    from unnest(${column((e) => e.id)}::text[], ${column((e) => e.type)}::text[], ${column((e) => e.apiVersion)}::text[],
                ${column((e) => (e.livemode === null ? null : String(e.livemode)))}::text[], ${column((e) => e.objectId)}::text[],
                ${column((e) => e.customerId)}::text[], ${column((e) => e.created.toISOString())}::text[],
                ${column((e) => e.status)}::text[])
      with ordinality as e(id, type, api_version, livemode, object_id, customer_id, created, status, n)
    full join jsonb_array_elements(${payloadArray(events)}::text::jsonb) with ordinality as p(payload, n) using (n)
    on conflict (id) do nothing
    returning id`;
  return new Set(rows.map((row) => row.id));
}

/**
 * The payloads as one JSON array, joined as they are. Each `payloadJson` is one JSON value (the
 * verified body, or a stringified object), so the array has one element per event. Joining them
 * spares each payload the copy that quoting it as an element of a text array costs on both sides
 * (about a fifth of what the webhook allocated per request: bench webhook, heap sampling).
 */
function payloadArray(events: readonly NewStripeEvent[]): string {
  return `[${events.map((event) => event.payloadJson).join(",")}]`;
}

export interface PendingEvent {
  readonly id: string;
  readonly type: string;
  readonly objectId: string | null;
  readonly customerId: string | null;
  readonly created: Date;
  readonly receivedAt: Date;
  readonly attempts: number;
  /** The event as received, or null when its type was not among the `payloadTypes` asked for. */
  readonly payload: unknown;
}

/**
 * Customers with due pending events, the customer of the oldest event first (arrival order).
 * Events without a customer are returned under the key "" (processed one by one).
 *
 * Reads at most `DUE_WINDOW` due events, oldest first, through the pending index, so a pass costs
 * the same with 100 events pending as with 100,000: the customers returned are those of the
 * oldest due events (fewer than `limit` when the window holds fewer customers; the next pass
 * takes the next ones).
 */
export async function dueCustomers(sql: Db, now: Date, limit: number): Promise<string[]> {
  const rows = await sql<{ customer: string }[]>`
    select customer
    from (
      select coalesce(customer_id, '') as customer, received_at
      from stripe_events
      where status = 'pending' and next_attempt_at <= greatest(${now}::timestamptz, clock_timestamp())
      order by received_at
      limit ${Math.max(limit, DUE_WINDOW)}
    ) as due
    group by customer
    order by min(received_at)
    limit ${limit}`;
  return rows.map((r) => r.customer);
}

/** How many of the oldest due events `dueCustomers` looks at. */
const DUE_WINDOW = 2_000;

// "Due" compares with the later of the worker's clock and the database's: defaults such as
// `next_attempt_at default now()` come from the database clock, which can run a few
// milliseconds ahead of the process's, and a worker with an injected clock may be ahead of both.

/**
 * What the worker reads of due events: every column, and the payload only of the types in
 * `payloadTypes` (the kinds it applies from their payloads). The others' payloads (invoices,
 * most of what Stripe sends) are neither sent nor parsed.
 */
export interface DueEventsQuery {
  readonly now: Date;
  readonly limit: number;
  readonly payloadTypes: readonly string[];
}

/**
 * One customer's due pending events in arrival order; "" is the events without a customer.
 * `customer_id = $1` (not `coalesce(...)`), so the lookup goes through the customer index
 * whatever the backlog.
 *
 * The caller holds the customer's inbox lock (`lockCustomers`) until its transaction ends: that
 * lock, not a row lock on each event, keeps every other worker off these events (and, read
 * committed, this statement sees all that the lock's previous holder committed). A `for update`
 * as well would write a WAL record per event for nothing (about 50 bytes, of the ~1,200 that
 * applying an event costs).
 */
export async function dueEventsOfCustomer(sql: TransactionSql, customer: string, query: DueEventsQuery): Promise<PendingEvent[]> {
  const { now, limit } = query;
  const rows = await sql<PendingRow[]>`
    select id, type, object_id, customer_id, created, received_at, attempts, ${payloadOf(sql, query.payloadTypes)}
    from stripe_events
    where status = 'pending' and ${customer === "" ? sql`customer_id is null` : sql`customer_id = ${customer}`}
      and next_attempt_at <= greatest(${now}::timestamptz, clock_timestamp())
    order by received_at, id
    limit ${limit}`;
  return rows.map(pendingEvent);
}

/** The payload column, null for the types not asked for. */
const payloadOf = (sql: TransactionSql, types: readonly string[]) => sql`case when type = any(${sql.array(types as string[])}::text[]) then payload end as payload`;

type PendingRow = { id: string; type: string; object_id: string | null; customer_id: string | null; created: Date; received_at: Date; attempts: number; payload: unknown };

const pendingEvent = (r: PendingRow): PendingEvent => ({
  id: r.id,
  type: r.type,
  objectId: r.object_id,
  customerId: r.customer_id,
  created: r.created,
  receivedAt: r.received_at,
  attempts: r.attempts,
  payload: r.payload,
});

/**
 * Takes the inbox lock of each customer (`pg_try_advisory_xact_lock('stripe_customer:<id>')`, held
 * until the transaction ends; one customer is never worked on twice at once, even across
 * replicas) and returns those it got, in the order given. Also sets the audit actor `stripe` for
 * the transaction. One statement for a whole batch of customers.
 */
export async function lockCustomers(sql: TransactionSql, customers: readonly string[]): Promise<string[]> {
  const rows = await sql<{ customer: string }[]>`
    with actor as materialized (select set_config('mindroom.actor', 'stripe', true))
    select c.customer
    from actor, unnest(${sql.array(customers as string[])}::text[]) with ordinality as c(customer, n)
    where pg_try_advisory_xact_lock(hashtext('stripe_customer:' || c.customer))
    order by c.n`;
  return rows.map((r) => r.customer);
}

/**
 * `dueEventsOfCustomer` for many customers in one statement (none of them ""), whose inbox locks
 * the caller holds: each customer's due pending events in arrival order, at most `query.limit`
 * per customer.
 */
export async function dueEventsOfCustomers(sql: TransactionSql, customers: readonly string[], query: DueEventsQuery): Promise<Map<string, PendingEvent[]>> {
  const { now, limit } = query;
  const rows = await sql<PendingRow[]>`
    select e.id, e.type, e.object_id, e.customer_id, e.created, e.received_at, e.attempts, e.payload
    from unnest(${sql.array(customers as string[])}::text[]) with ordinality as c(customer, n)
    cross join lateral (
      select id, type, object_id, customer_id, created, received_at, attempts, ${payloadOf(sql, query.payloadTypes)}
      from stripe_events
      where status = 'pending' and customer_id = c.customer
        and next_attempt_at <= greatest(${now}::timestamptz, clock_timestamp())
      order by received_at, id
      limit ${limit}
    ) as e
    order by c.n, e.received_at, e.id`;
  const byCustomer = new Map<string, PendingEvent[]>(customers.map((c) => [c, []]));
  for (const row of rows) byCustomer.get(row.customer_id!)?.push(pendingEvent(row));
  return byCustomer;
}

export async function markProcessed(sql: Db, ids: readonly string[], status: "processed" | "ignored" = "processed"): Promise<void> {
  if (ids.length === 0) return;
  await sql`
    update stripe_events
    set status = ${status}, processed_at = now(), last_error = null
    where id in ${sql(ids)}`;
}

/** Records a failed attempt: back to pending at `nextAttemptAt`, or `dead` when `dead` is true. */
export async function markFailed(sql: Db, id: string, error: string, nextAttemptAt: Date | null, dead: boolean): Promise<void> {
  await sql`
    update stripe_events
    set attempts = attempts + 1, last_error = ${error.slice(0, 2000)},
        status = ${dead ? "dead" : "pending"}, next_attempt_at = ${nextAttemptAt ?? sql`now()`},
        processed_at = ${dead ? sql`now()` : null}
    where id = ${id}`;
}

/** Parks an event until `until` without counting an attempt (it waits for its customer). */
export async function deferEvent(sql: Db, id: string, reason: string, until: Date): Promise<void> {
  await sql`update stripe_events set last_error = ${reason}, next_attempt_at = ${until} where id = ${id}`;
}

/**
 * The subscription events of one Stripe subscription created in one second (any processing state
 * but dead or ignored), with the status their payloads carry: the payload-mode guard's view of
 * which same-second event the stored state came from.
 */
export async function sameSecondSubscriptionEvents(
  sql: Db,
  at: { readonly customerId: string; readonly subscriptionId: string; readonly created: Date },
): Promise<{ type: string; status: string | null }[]> {
  return sql<{ type: string; status: string | null }[]>`
    select type, payload->'data'->'object'->>'status' as status
    from stripe_events
    where customer_id = ${at.customerId} and created = ${at.created} and object_id = ${at.subscriptionId}
      and type like 'customer.subscription.%' and status in ('pending', 'processed', 'failed')`;
}

/** Makes the customers' parked events due now (their `customer.*` events have just been applied). */
export async function wakeCustomers(sql: Db, customerIds: readonly string[]): Promise<void> {
  if (customerIds.length === 0) return;
  await sql`
    update stripe_events set next_attempt_at = received_at
    where status = 'pending' and customer_id = any(${customerIds as string[]}::text[]) and next_attempt_at > received_at`;
}

/** The newest `created` in the inbox: the catch-up cursor (null when the inbox is empty). */
export async function newestEventCreated(sql: Db): Promise<Date | null> {
  const rows = await sql<{ newest: Date | null }[]>`select max(created) as newest from stripe_events`;
  return rows[0]?.newest ?? null;
}

export interface DeadEvent {
  readonly id: string;
  readonly type: string;
  readonly customerId: string | null;
  readonly attempts: number;
  readonly lastError: string | null;
  readonly receivedAt: Date;
}

export interface InboxSummary {
  readonly counts: Readonly<Record<StripeEventStatus, number>>;
  /** `received_at` of the oldest pending event, or null. */
  readonly oldestPendingAt: Date | null;
  /** The 20 most recent dead events, for `status` and `doctor`. */
  readonly dead: readonly DeadEvent[];
}

/** What the inbox gauges show. */
export interface InboxGauges {
  readonly pending: number;
  readonly dead: number;
  /** `received_at` of the oldest pending event, or null. */
  readonly oldestPendingAt: Date | null;
}

/**
 * The gauges' figures through the pending and dead indexes, so that their cost follows the
 * backlog, not the table (30 days of handled events), which `inboxSummary` counts whole.
 */
export async function inboxGauges(sql: Db): Promise<InboxGauges> {
  const rows = await sql<{ pending: number; oldest: Date | null; dead: number }[]>`
    select (select count(*)::int from stripe_events where status = 'pending') as pending,
           (select min(received_at) from stripe_events where status = 'pending') as oldest,
           (select count(*)::int from stripe_events where status = 'dead') as dead`;
  const row = rows[0]!;
  return { pending: row.pending, dead: row.dead, oldestPendingAt: row.oldest };
}

/** One-query-per-part summary for the `status` command (every status counted: reads the whole table). */
export async function inboxSummary(sql: Db): Promise<InboxSummary> {
  const countRows = await sql<{ status: StripeEventStatus; n: number; oldest: Date | null }[]>`
    select status, count(*)::int as n, min(received_at) as oldest from stripe_events group by status`;
  const counts: Record<StripeEventStatus, number> = { pending: 0, processed: 0, failed: 0, dead: 0, ignored: 0 };
  let oldestPendingAt: Date | null = null;
  for (const row of countRows) {
    counts[row.status] = row.n;
    if (row.status === "pending") oldestPendingAt = row.oldest;
  }
  const deadRows = await sql<{ id: string; type: string; customer_id: string | null; attempts: number; last_error: string | null; received_at: Date }[]>`
    select id, type, customer_id, attempts, last_error, received_at
    from stripe_events where status = 'dead' order by received_at desc limit 20`;
  const dead = deadRows.map((r) => ({
    id: r.id,
    type: r.type,
    customerId: r.customer_id,
    attempts: r.attempts,
    lastError: r.last_error,
    receivedAt: r.received_at,
  }));
  return { counts, oldestPendingAt, dead };
}
