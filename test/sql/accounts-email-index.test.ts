/**
 * Looking an account up by email, whatever its case, reads an index and not the whole table
 * (migration 0015): the inbox does it for every new Stripe customer, so a scan made each sign-up
 * cost time in proportion to the accounts already there.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.sql`insert into accounts (email) select 'user-' || n || '@Example.com' from generate_series(1, 20000) as n`;
  await db.sql`analyze accounts`;
});
afterAll(async () => {
  await db?.drop();
});

test("lower(email) = $1 (the inbox's and the sign-up trigger's lookup) uses accounts_email_lower_idx", async () => {
  const plan = await db.sql.unsafe<{ "QUERY PLAN": string }[]>(`explain select id from accounts where lower(email) = 'user-17@example.com' for update`);
  const text = plan.map((row) => row["QUERY PLAN"]).join("\n");
  expect(text).toMatch(/accounts_email_lower_idx/);
  expect(text).not.toMatch(/Seq Scan/);
  const [found] = await db.sql<{ email: string }[]>`select email from accounts where lower(email) = ${"user-17@example.com"}`;
  expect(found?.email).toBe("user-17@Example.com");
});
