/**
 * The chaos soak's invariants (bench/lib/chaos-check.ts) can fail: each finds the violation it
 * exists for in a database made to hold one, and nothing in a clean one.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { type CheckInput, noLostEvents, noPendingJournal, noStrayApps, noTeardownWithoutBackup, subscriptionsMatch } from "../../bench/lib/chaos-check.ts";
import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { upsertHost } from "../../src/state/hosts.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { createInstance } from "../sql/support.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

function input(overrides: Partial<CheckInput> = {}): CheckInput {
  return { sql: db.sql, sim: new StripeSim(() => 1_700_000_000, "chk"), accepted: new Set(), hostApps: new Map(), planEnv: {}, ...overrides };
}

describe("chaos invariants", () => {
  test("an accepted event missing from the inbox, or still pending, is lost; a dead letter with a reason is not", async () => {
    await db.sql`insert into stripe_events (id, type, created, payload) values ('evt_pending', 'x', now(), '{}')`;
    await db.sql`insert into stripe_events (id, type, created, payload, status, last_error) values ('evt_dead', 'x', now(), '{}', 'dead', 'boom')`;
    const violations = await noLostEvents(input({ accepted: new Set(["evt_missing", "evt_pending", "evt_dead"]) }));
    expect(violations).toEqual(["event evt_missing was answered 200 but is not in the inbox", "event evt_pending is pending"]);
  });

  test("a pending journal row, and a storage app destroyed with no completed final backup before it", async () => {
    const c = await createInstance(db.sql);
    const [row] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${c.instanceId}`;
    await db.sql`update controller_leases set epoch = 3, holder = 'chk' where name = 'reconciler'`;
    await db.sql`insert into instance_operations (instance_id, action, target, epoch) values (${c.instanceId}, 'destroyApp', ${`${row!.subdomain}-matrix`}, 3)`;
    expect(await noPendingJournal(input())).toHaveLength(1);
    expect(await noTeardownWithoutBackup(input())).toEqual([expect.stringMatching(/-matrix destroyed at .* without a completed final backup/)]);
  });

  test("an app on a host that no live instance there owns is a stray", async () => {
    const c = await createInstance(db.sql);
    const hostId = await upsertHost(db.sql, { name: "h1", sshUrl: "ssh://dokku@127.0.0.1:2201" });
    await db.sql`update instances set host_id = ${hostId} where id = ${c.instanceId}`;
    const [row] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${c.instanceId}`;
    const apps = [{ name: `${row!.subdomain}-matrix`, running: true, unhealthy: false }, { name: "leaked-matrix", running: true, unhealthy: false }];
    expect(await noStrayApps(input({ hostApps: new Map([["h1", apps]]) }))).toEqual(["app leaked-matrix on host h1 belongs to no live instance placed there"]);
  });

  test("a subscription whose row differs from its events, or has none", async () => {
    const sim = new StripeSim(() => 1_700_000_000, "chk");
    sim.createSubscription({ customer: sim.createCustomer({ email: "c@example.com" }), tier: "starter" });
    expect(await subscriptionsMatch(input({ sim }))).toEqual([expect.stringMatching(/^subscription sub_chk\d+: row null but its events define/)]);
  });
});
