/**
 * The inbox gauges (refreshed every few seconds) count what is pending and dead through their
 * indexes: their cost follows the backlog, not the 30 days of handled events the table keeps.
 */
import postgres from "postgres";
import { afterAll, beforeAll, expect, test } from "vitest";

import { inboxGauges } from "../../src/state/stripe-events.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.sql`
    insert into stripe_events (id, type, created, payload, status, processed_at, received_at)
    select 'evt_done_' || n, 'invoice.paid', now(), '{}'::jsonb, 'processed', now(), now() - interval '1 day'
    from generate_series(1, 50000) as n`;
  await db.sql`
    insert into stripe_events (id, type, customer_id, created, payload, status, received_at)
    select 'evt_pending_' || n, 'invoice.created', 'cus_' || n, now(), '{}'::jsonb, 'pending', timestamptz '2026-12-01T00:00:00Z' + (n || ' s')::interval
    from generate_series(1, 30) as n`;
  await db.sql`
    insert into stripe_events (id, type, created, payload, status, processed_at, attempts)
    select 'evt_dead_' || n, 'customer.updated', now(), '{}'::jsonb, 'dead', now(), 8 from generate_series(1, 3) as n`;
  await db.sql`analyze stripe_events`;
});
afterAll(async () => {
  await db?.drop();
});

test("inboxGauges counts pending and dead events and finds the oldest pending one", async () => {
  expect(await inboxGauges(db.sql)).toEqual({ pending: 30, dead: 3, oldestPendingAt: new Date("2026-12-01T00:00:01Z") });
});

test("inboxGauges reads no handled event: the plan of its statement has no sequential scan", async () => {
  let statement = "";
  const watched = postgres(db.url, { max: 1, onnotice: () => {}, debug: (_connection, query) => void (statement = query) });
  try {
    await inboxGauges(watched);
  } finally {
    await watched.end();
  }
  const plan = await db.sql.unsafe<{ "QUERY PLAN": string }[]>(`explain ${statement}`);
  const text = plan.map((row) => row["QUERY PLAN"]).join("\n");
  expect(text).toMatch(/stripe_events_pending_idx|stripe_events_pending_customer_idx/);
  expect(text).toMatch(/stripe_events_dead_idx/);
  expect(text).not.toMatch(/Seq Scan/);
});
