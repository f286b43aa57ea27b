/**
 * bench/lib/webhook-pair.ts finishUpkeep: between two rounds of the webhook benchmark it does the
 * vacuum and analyze a round left due, on a real Postgres, so that autovacuum does not do them
 * during the next round.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { finishUpkeep } from "../../bench/lib/webhook-pair.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

/** The table's counters as autovacuum reads them, once this session's writes have been reported. */
async function counters(table: string): Promise<{ dead: number; modified: number; vacuumed: boolean; analyzed: boolean }> {
  const [row] = await db.sql<{ dead: number; modified: number; vacuumed: boolean; analyzed: boolean }[]>`
    select n_dead_tup::int as dead, n_mod_since_analyze::int as modified,
           last_vacuum is not null as vacuumed, last_analyze is not null as analyzed
    from pg_stat_user_tables where relname = ${table}`;
  return row!;
}

test("vacuums and analyzes the tables past autovacuum's thresholds, and only those", async () => {
  // Autovacuum itself leaves them alone, so that what is done is finishUpkeep's doing.
  await db.sql`create table upkeep_due (id int primary key, note text) with (autovacuum_enabled = false)`;
  await db.sql`create table upkeep_quiet (id int primary key) with (autovacuum_enabled = false)`;
  const session = await db.sql.reserve();
  try {
    await session`insert into upkeep_due select i, 'x' from generate_series(1, 5000) i`;
    await session`update upkeep_due set note = 'y' where id <= 4000`; // 4,000 dead rows
    await session`insert into upkeep_quiet values (1)`; // under every threshold (50 rows)
    // A session reports its counters when it goes idle next, at most once a second unless forced.
    await session`select pg_stat_force_next_flush()`;
  } finally {
    session.release();
  }
  await expect.poll(async () => (await counters("upkeep_due")).dead, { timeout: 10_000 }).toBeGreaterThan(1000);

  const seconds = await finishUpkeep(db.sql);

  expect(seconds).toBeGreaterThanOrEqual(0);
  // VACUUM and ANALYZE report their own counters at once.
  expect(await counters("upkeep_due")).toMatchObject({ dead: 0, modified: 0, vacuumed: true, analyzed: true });
  expect(await counters("upkeep_quiet")).toMatchObject({ vacuumed: false, analyzed: false });
});
