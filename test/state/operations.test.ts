/**
 * The intent journal over real Postgres: `advance` records one action's success and the next
 * action's intent in one statement (issue 17: one round trip per action), under the epoch fence.
 */
import type { Sql } from "postgres";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { acquireOrRenew, RECONCILER_LEASE, STALE_EPOCH_SQLSTATE } from "../../src/state/lease.ts";
import { createJournal } from "../../src/state/operations.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let instanceId: string;
let epoch: number;

beforeAll(async () => {
  db = await createTestDatabase();
  instanceId = await createInstance(db.sql);
  epoch = (await acquireOrRenew(db.sql, { name: RECONCILER_LEASE, holder: "journal-test", ttlMs: 60_000 })).epoch;
});
afterAll(async () => db?.drop());

async function createInstance(sql: Sql): Promise<string> {
  const [account] = await sql<{ id: string }[]>`insert into accounts (email) values ('journal@example.com') returning id`;
  const [subscription] = await sql<{ id: string }[]>`
    insert into subscriptions (account_id, tier, status) values (${account!.id}, 'free', 'active') returning id`;
  const [instance] = await sql<{ id: string }[]>`
    insert into instances (subscription_id, account_id, subdomain) values (${subscription!.id}, ${account!.id}, 'journal-test') returning id`;
  return instance!.id;
}

async function rows(): Promise<Array<{ id: number; action: string; status: string; attempt: number; finished: boolean }>> {
  const result = await db.sql<{ id: string; action: string; status: string; attempt: number; finished_at: Date | null }[]>`
    select id, action, status, attempt, finished_at from instance_operations where instance_id = ${instanceId} order by id`;
  return result.map((r) => ({ id: Number(r.id), action: r.action, status: r.status, attempt: r.attempt, finished: r.finished_at !== null }));
}

const entry = (action: string, target: string) => ({ instanceId, action, target, paramsHash: `hash-${action}-${target}`, epoch });

describe("journal", () => {
  test("advance records the previous success and the next intent; attempts count earlier failures only", async () => {
    const journal = createJournal(db.sql);
    const failed = await journal.begin(entry("deployImage", "a-backend"));
    await journal.finish(failed, "failed", "boom", epoch);
    const first = await journal.begin(entry("createApp", "a-backend"));
    const second = await journal.advance(first, entry("deployImage", "a-backend"));
    expect(await rows()).toEqual([
      { id: failed, action: "deployImage", status: "failed", attempt: 1, finished: true },
      { id: first, action: "createApp", status: "succeeded", attempt: 1, finished: true },
      { id: second, action: "deployImage", status: "pending", attempt: 2, finished: false },
    ]);
    await journal.finish(second, "succeeded", null, epoch);
    expect((await rows()).at(-1)).toMatchObject({ id: second, status: "succeeded", finished: true });
  });

  test("a stale epoch is refused as a whole: no new intent, and the previous row stays pending", async () => {
    const journal = createJournal(db.sql);
    const pending = await journal.begin(entry("setConfig", "a-backend"));
    const stale = { ...entry("setDomains", "a-backend"), epoch: epoch - 1 };
    await expect(journal.advance(pending, stale)).rejects.toMatchObject({ code: STALE_EPOCH_SQLSTATE });
    const after = await rows();
    expect(after.at(-1)).toMatchObject({ id: pending, action: "setConfig", status: "pending", finished: false });
    expect(after.some((r) => r.action === "setDomains")).toBe(false);
  });
});
