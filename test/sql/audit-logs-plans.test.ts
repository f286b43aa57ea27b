/**
 * Searches of the audit trail by instance go through their index, which since migration 0019
 * holds only rows with an instance: account and billing rows (three per sign-up) write no entry.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.sql`
    insert into audit_logs (action, action_category, details, created_at)
    select 'subscription.created', 'billing', '{}'::jsonb, now() - (n || ' s')::interval from generate_series(1, 5000) as n`;
  await db.sql`analyze audit_logs`;
});
afterAll(async () => {
  await db?.drop();
});

test("rows without an instance write no entry into the instance index", async () => {
  // 5,000 entries would take about 20 pages; an index with none keeps its metapage and, at most, an empty root.
  const size = await db.sql<{ bytes: number }[]>`select pg_relation_size('audit_logs_instance_time_idx')::int as bytes`;
  expect(size[0]!.bytes).toBeLessThanOrEqual(2 * 8192);
});

test("a search by instance uses the instance index (generic plan of a prepared statement)", async () => {
  const plan = await db.sql.begin(async (tx) => {
    await tx.unsafe("set local plan_cache_mode = force_generic_plan");
    await tx.unsafe("prepare probe(uuid) as select id from audit_logs where instance_id = $1 order by created_at desc limit 50");
    const rows = await tx.unsafe<{ "QUERY PLAN": string }[]>(`explain execute probe('00000000-0000-4000-8000-000000000001')`);
    await tx.unsafe("deallocate probe");
    return rows.map((row) => row["QUERY PLAN"]).join("\n");
  });
  expect(plan).toMatch(/audit_logs_instance_time_idx/);
});
