/** Database pool metrics on a real Postgres: one scrape shows the connections and reachability. */
import { randomBytes } from "node:crypto";

import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { connect } from "../../src/state/db.ts";
import { registerPoolMetrics } from "../../src/state/pool-metrics.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

function value(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

describe("pool metrics", () => {
  test("one scrape holds this process's connections by state, the pool size and db_up", async () => {
    const applicationName = `pool-metrics-${randomBytes(4).toString("hex")}`;
    const sql = connect(db.url, { max: 3, applicationName });
    const registry = new Registry();
    registerPoolMetrics(registry, sql, applicationName, 3);
    await sql`select 1`;

    const first = await registry.metrics();
    expect(value(first, "mindroom_db_up")).toBe(1);
    expect(value(first, "mindroom_db_pool_max")).toBe(3);
    // The connection running the pg_stat_activity query itself is active.
    expect(value(first, 'mindroom_db_connections{state="active"}')).toBeGreaterThanOrEqual(1);

    await sql.end({ timeout: 5 });
    const down = await registry.metrics();
    expect(value(down, "mindroom_db_up")).toBe(0);
    expect(down).not.toMatch(/^mindroom_db_connections\{/m);
  });
});
