/**
 * Marking an event handled keeps its new row version on the same page (migration 0017), so the
 * WAL carries only the changed bytes instead of the whole event again. On full pages
 * (fillfactor 100) the new versions went to other pages.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { markProcessed } from "../../src/state/stripe-events.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

/** The page of each row: the block number of its ctid "(block,offset)". */
async function pages(ids: readonly string[]): Promise<Map<string, number>> {
  const rows = await db.sql<{ id: string; ctid: string }[]>`select id, ctid::text from stripe_events where id in ${db.sql(ids)}`;
  return new Map(rows.map((row) => [row.id, Number(/^\((\d+),/.exec(row.ctid)![1])]));
}

test("marking events processed writes their new versions on their own pages", async () => {
  // 200 events of about 1 KB each, as the webhook stores them: many pages, each filled to the fillfactor.
  await db.sql`
    insert into stripe_events (id, type, customer_id, created, payload, status)
    select 'evt_ff_' || n, 'customer.subscription.created', 'cus_' || n, now(),
           jsonb_build_object('data', jsonb_build_object('object', jsonb_build_object('id', 'sub_' || n, 'filler', repeat('x', 1000)))), 'pending'
    from generate_series(1, 200) as n`;
  const ids = Array.from({ length: 200 }, (_, i) => `evt_ff_${i + 1}`);
  const before = await pages(ids);
  expect(new Set(before.values()).size).toBeGreaterThan(20);
  await markProcessed(db.sql, ids);
  const after = await pages(ids);
  const moved = ids.filter((id) => after.get(id) !== before.get(id));
  expect(moved).toEqual([]);
});
