/**
 * The inbox's per-customer statements read the customer's pending events and nothing else, even
 * before autovacuum has analyzed a table that a burst has just filled (migration 0016). Without a
 * partial index on (customer_id, ...) where status = 'pending', Postgres with no statistics
 * combined the customer index with the whole pending index: every wake of a customer read the
 * entire backlog, so the inbox slowed as the backlog grew, and the backlog grew faster.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  // A burst's backlog: 20,000 pending events of 4,000 customers, never analyzed.
  await db.sql`
    insert into stripe_events (id, type, customer_id, created, payload, status, received_at)
    select 'evt_' || n, 'invoice.created', 'cus_' || (n / 5), now(), '{}'::jsonb, 'pending', now() - (n || ' ms')::interval
    from generate_series(1, 20000) as n`;
});
afterAll(async () => {
  await db?.drop();
});

/** The plan Postgres uses for a prepared statement once it settles on a generic one. */
async function genericPlan(statement: string, argument: string): Promise<string> {
  return db.sql.begin(async (tx) => {
    await tx.unsafe("set local plan_cache_mode = force_generic_plan");
    await tx.unsafe(`prepare probe as ${statement}`);
    const rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(`explain (analyze, buffers off) execute probe(${argument})`);
    await tx.unsafe("deallocate probe");
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  });
}

const readsPendingOfOneCustomer = (plan: string): void => {
  expect(plan).toMatch(/stripe_events_pending_customer_idx/);
  expect(plan).not.toMatch(/stripe_events_pending_idx|Seq Scan/);
};

test("waking customers (wakeCustomers) reads only their pending events", async () => {
  const plan = await genericPlan(
    "update stripe_events set next_attempt_at = received_at where status = 'pending' and customer_id = any($1::text[]) and next_attempt_at > received_at",
    "array['cus_1500', 'cus_2500']",
  );
  readsPendingOfOneCustomer(plan);
});

test("reading customers' due events (dueEventsOfCustomers) reads only theirs", async () => {
  const plan = await genericPlan(
    `select e.id from unnest($1::text[]) with ordinality as c(customer, n)
     cross join lateral (select id, received_at from stripe_events where status = 'pending' and customer_id = c.customer
                         and next_attempt_at <= now() order by received_at, id limit 200) as e`,
    "array['cus_1500', 'cus_2500']",
  );
  readsPendingOfOneCustomer(plan);
});

test("stripe_events has the indexes its statements use and no other (each entry is written for every handled event)", async () => {
  const rows = await db.sql<{ indexname: string }[]>`select indexname from pg_indexes where schemaname = 'public' and tablename = 'stripe_events' order by indexname`;
  expect(rows.map((row) => row.indexname)).toEqual([
    "stripe_events_customer_idx",
    "stripe_events_dead_idx",
    "stripe_events_pending_customer_idx",
    "stripe_events_pending_idx",
    "stripe_events_pkey",
  ]);
  // The retention sweep (sweep_retention) reads the table whole: no index on processed_at could serve its coalesce.
  const plan = await db.sql.unsafe<{ "QUERY PLAN": string }[]>(
    `explain delete from public.stripe_events where status in ('processed', 'ignored') and coalesce(processed_at, received_at) < now() - interval '30 days'`,
  );
  expect(plan.map((row) => row["QUERY PLAN"]).join("\n")).toMatch(/Seq Scan on stripe_events/);
});

test("only subscription events enter the customer index, which the same-second guard reads (migration 0019)", async () => {
  await db.sql`
    insert into stripe_events (id, type, customer_id, object_id, created, payload, status)
    values ('evt_sub_a', 'customer.subscription.updated', 'cus_guard', 'sub_guard', '2026-01-01T00:00:00Z', '{}'::jsonb, 'processed')`;
  const entries = await db.sql<{ n: number }[]>`
    select count(*)::int as n from stripe_events where type like 'customer.subscription.%'`;
  const size = await db.sql<{ tuples: number }[]>`select reltuples::int as tuples from pg_class where relname = 'stripe_events_customer_idx'`;
  await db.sql`analyze stripe_events`;
  const analyzed = await db.sql<{ tuples: number }[]>`select reltuples::int as tuples from pg_class where relname = 'stripe_events_customer_idx'`;
  expect(analyzed[0]!.tuples).toBe(entries[0]!.n);
  expect(size).toHaveLength(1);
  const plan = await genericPlan(
    `select type from stripe_events where customer_id = $1 and created = '2026-01-01T00:00:00Z' and object_id = 'sub_guard'
       and type like 'customer.subscription.%' and status in ('pending', 'processed', 'failed')`,
    "'cus_guard'",
  );
  expect(plan).toMatch(/stripe_events_customer_idx/);
});
