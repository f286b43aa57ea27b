import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { JOB_PERIODS, periodStart, runDueJobs } from "../../src/runtime/jobs.ts";
import { seed } from "../../src/state/db.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
const quiet = { info: () => {}, error: () => {} };

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
});

afterAll(async () => {
  await db?.drop();
});

describe("scheduled jobs", () => {
  test("periods are aligned to UTC: a day starts at 00:00 UTC", () => {
    expect(periodStart(new Date("2026-11-24T23:59:59Z"), JOB_PERIODS.reset_daily_usage).toISOString()).toBe("2026-11-24T00:00:00.000Z");
    expect(periodStart(new Date("2026-11-24T10:30:00Z"), JOB_PERIODS.calculate_storage_usage).toISOString()).toBe("2026-11-24T10:00:00.000Z");
  });

  test("each job runs once per period, even when two replicas check at once", async () => {
    await db.sql`update subscriptions set messages_today = 42`;
    const now = new Date("2026-11-24T10:30:00Z");
    const [a, b] = await Promise.all([runDueJobs(db.sql, now, quiet), runDueJobs(db.sql, now, quiet)]);
    expect([...a, ...b].sort()).toEqual(["auto_pause_inactive_instances", "calculate_storage_usage", "cleanup_expired_data", "reset_daily_usage", "sweep_api_state"]);
    const [usage] = await db.sql<{ max: number }[]>`select max(messages_today)::int as max from subscriptions`;
    expect(usage!.max).toBe(0);
    expect(await runDueJobs(db.sql, new Date("2026-11-24T10:59:00Z"), quiet)).toEqual([]);
    expect((await runDueJobs(db.sql, new Date("2026-11-24T11:00:00Z"), quiet)).sort()).toEqual(["auto_pause_inactive_instances", "calculate_storage_usage", "sweep_api_state"]);
    expect((await runDueJobs(db.sql, new Date("2026-11-25T00:00:01Z"), quiet)).sort()).toEqual(["auto_pause_inactive_instances", "calculate_storage_usage", "cleanup_expired_data", "reset_daily_usage", "sweep_api_state"]);
    const rows = await db.sql<{ name: string; last_error: string | null }[]>`select name, last_error from scheduled_jobs order by name`;
    expect(rows.every((row) => row.last_error === null)).toBe(true);
  });
});
