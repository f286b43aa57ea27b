/**
 * Triggers and constraints of migrations/0002-0003: generation bumps, reconcile notifications
 * (LISTEN through postgres.js), tier policy, status audit, epoch fencing, and the seed's
 * idempotency. Notifications are awaited deterministically: after the writes under test, a marker
 * is notified on the same channel; Postgres delivers notifications in commit order, so everything
 * the writes sent has arrived when the marker arrives.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { countRows, createCustomer, createInstance, SEED, seed, SQLSTATE,sqlState } from "./support.ts";

const CHANNEL = "mindroom_reconcile";
let db: TestDatabase;
let unlisten: (() => Promise<void>) | undefined;
const received: string[] = [];
const markers = new Map<string, () => void>();
let markerCount = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
  const listener = await db.sql.listen(CHANNEL, (payload) => {
    received.push(payload);
    markers.get(payload)?.();
  });
  unlisten = listener.unlisten;
});

afterAll(async () => {
  await unlisten?.();
  await db?.drop();
});

/** Resolves when every notification committed before this call has been received. */
async function flush(): Promise<void> {
  const marker = `marker-${++markerCount}`;
  const arrived = new Promise<void>((resolve) => markers.set(marker, resolve));
  await db.sql`select pg_notify(${CHANNEL}, ${marker})`;
  await arrived;
}

/** The reconcile notifications that `action` causes, in arrival order. */
async function notificationsOf(action: () => Promise<unknown>): Promise<string[]> {
  await flush(); // earlier writes (fixtures) may still be in flight
  received.length = 0;
  await action();
  await flush();
  return received.filter((payload) => !payload.startsWith("marker-"));
}

async function generation(instanceId: string): Promise<number> {
  const [row] = await db.sql<{ g: number }[]>`select generation::int as g from instances where id = ${instanceId}`;
  return row!.g;
}

describe("generation and reconcile notifications", () => {
  const feeds: [string, (ids: { sub: string; inst: string; host: string }) => string][] = [
    ["instance desired_state", (x) => `update instances set desired_state = 'stopped' where id = '${x.inst}'`],
    ["instance reconcile_paused", (x) => `update instances set reconcile_paused = true where id = '${x.inst}'`],
    ["instance config", (x) => `update instances set config = '{"agents": ["b"]}' where id = '${x.inst}'`],
    ["instance host_id", (x) => `update instances set host_id = '${x.host}' where id = '${x.inst}'`],
    ["subscription status", (x) => `update subscriptions set status = 'past_due' where id = '${x.sub}'`],
    ["subscription tier", (x) => `update subscriptions set tier = 'professional' where id = '${x.sub}'`],
    ["subscription limits", (x) => `update subscriptions set max_agents = 42 where id = '${x.sub}'`],
    ["subscription past_due_since", (x) => `update subscriptions set status = 'past_due', past_due_since = now() - interval '3 days' where id = '${x.sub}'`],
    ["subscription canceled_at", (x) => `update subscriptions set canceled_at = now() where id = '${x.sub}'`],
  ];
  const statusWrites: [string, (ids: { sub: string; inst: string }) => string][] = [
    ["instance status", (x) => `update instances set status = 'provisioning' where id = '${x.inst}'`],
    ["instance health", (x) => `update instances set health_status = 'critical', health_details = '{}', last_health_check = now() where id = '${x.inst}'`],
    ["instance observed_generation + conditions", (x) => `update instances set observed_generation = generation, conditions = '[{"type":"Ready"}]' where id = '${x.inst}'`],
    ["instance URLs, error, restarts", (x) => `update instances set frontend_url = 'https://a', last_error = 'e', restart_count = 1 where id = '${x.inst}'`],
    ["instance last_usage_at", (x) => `update instances set last_usage_at = now() where id = '${x.inst}'`],
    ["update_instance_health()", (x) => `select update_instance_health('${x.inst}', 'degraded')`],
    ["track_usage()", (x) => `select track_usage('${x.inst}', 'bot')`],
    ["subscription Stripe sync stamps", (x) => `update subscriptions set stripe_synced_at = now(), stripe_state_at = now(), current_period_end = now() where id = '${x.sub}'`],
    ["subscription messages_today", (x) => `update subscriptions set messages_today = 5 where id = '${x.sub}'`],
  ];

  async function fixture(): Promise<{ sub: string; inst: string; host: string }> {
    const c = await createInstance(db.sql, { tier: "starter" });
    const [host] = await db.sql<{ id: string }[]>`
      insert into dokku_hosts (name, ssh_url) values (${`h${c.instanceId.slice(0, 8)}`}, 'ssh://dokku@127.0.0.1') returning id`;
    return { sub: c.subscriptionId, inst: c.instanceId, host: host!.id };
  }

  test.each(feeds)("%s bumps generation by one and notifies the subscription once", async (_name, statement) => {
    const x = await fixture();
    const before = await generation(x.inst);
    expect(await notificationsOf(() => db.sql.unsafe(statement(x)))).toEqual([x.sub]);
    expect(await generation(x.inst)).toBe(before + 1);
  });

  test.each(statusWrites)("%s neither bumps nor notifies", async (_name, statement) => {
    const x = await fixture();
    const before = await generation(x.inst);
    expect(await notificationsOf(() => db.sql.unsafe(statement(x)))).toEqual([]);
    expect(await generation(x.inst)).toBe(before);
  });

  test("inserts and deletes notify; a backup request notifies; a no-op update does not", async () => {
    let c: Awaited<ReturnType<typeof createInstance>> | undefined;
    const inserted = await notificationsOf(async () => (c = await createInstance(db.sql)));
    expect(inserted).toEqual([c!.subscriptionId, c!.subscriptionId]); // subscription, then instance
    expect(await notificationsOf(() => db.sql`update instances set desired_state = desired_state where id = ${c!.instanceId}`)).toEqual([]);
    expect(await notificationsOf(() => db.sql`insert into instance_backups (instance_id) values (${c!.instanceId})`)).toEqual([c!.subscriptionId]);
    expect(await notificationsOf(() => db.sql`delete from instances where id = ${c!.instanceId}`)).toEqual([c!.subscriptionId]);
  });

  test("a subscription born incomplete notifies nothing until its status first changes", async () => {
    let c: Awaited<ReturnType<typeof createCustomer>> | undefined;
    expect(await notificationsOf(async () => (c = await createCustomer(db.sql, { tier: "starter", status: "incomplete" })))).toEqual([]);
    expect(await notificationsOf(() => db.sql`update subscriptions set stripe_synced_at = now() where id = ${c!.subscriptionId}`)).toEqual([]);
    expect(await notificationsOf(() => db.sql`update subscriptions set status = 'active' where id = ${c!.subscriptionId}`)).toEqual([c!.subscriptionId]);
    for (const status of ["trialing", "past_due", "incomplete_expired", "canceled"]) {
      let other: Awaited<ReturnType<typeof createCustomer>> | undefined;
      expect(await notificationsOf(async () => (other = await createCustomer(db.sql, { status })))).toEqual([other!.subscriptionId]);
    }
  });

  test("deprovisioned instances are not bumped by subscription changes; generation never decreases", async () => {
    const x = await fixture();
    await db.sql`update instances set status = 'deprovisioned' where id = ${x.inst}`;
    const before = await generation(x.inst);
    await db.sql`update subscriptions set status = 'canceled' where id = ${x.sub}`;
    expect(await generation(x.inst)).toBe(before);
    await db.sql`update instances set desired_state = 'stopped' where id = ${x.inst}`;
    expect(await generation(x.inst)).toBe(before + 1);
    expect(await sqlState(db.sql`update instances set generation = ${before} where id = ${x.inst}`)).toBe(SQLSTATE.checkViolation);
  });
});

describe("subscription policy", () => {
  test("limits and features come from tiers on insert and on every tier change; instances follow", async () => {
    const c = await createInstance(db.sql, { tier: "free" });
    const limits = async () => (await db.sql`
      select s.max_agents, s.max_messages_per_day, s.max_storage_gb, s.max_platforms, s.max_team_members,
             s.features, i.memory_limit_mb, i.cpu_limit::float as cpu
      from subscriptions s join instances i on i.subscription_id = s.id where s.id = ${c.subscriptionId}`)[0];
    expect(await limits()).toMatchObject({ max_agents: 1, max_messages_per_day: 100, max_storage_gb: 1, max_platforms: 1, max_team_members: 1, memory_limit_mb: 512, cpu: 0.5 });
    await db.sql`update subscriptions set tier = 'starter' where id = ${c.subscriptionId}`;
    expect(await limits()).toMatchObject({
      max_agents: 3, max_messages_per_day: 1000, max_storage_gb: 5, max_platforms: 3, memory_limit_mb: 1024, cpu: 1,
      features: expect.objectContaining({ api_access: true, voice: true, file_uploads: true, custom_agents: false }),
    });
    await db.sql`update subscriptions set tier = 'professional' where id = ${c.subscriptionId}`;
    expect(await limits()).toMatchObject({
      max_agents: 10, max_messages_per_day: 10000, max_storage_gb: 50, max_platforms: 10, max_team_members: 10, memory_limit_mb: 2048, cpu: 2,
      features: expect.objectContaining({ voice: true, custom_agents: true, priority_support: true, team_collaboration: true, sla: false }),
    });
    await db.sql`update subscriptions set tier = 'enterprise' where id = ${c.subscriptionId}`;
    const enterprise = await limits();
    expect(enterprise).toMatchObject({ max_agents: null, max_messages_per_day: null, max_storage_gb: null, max_platforms: null, max_team_members: null, memory_limit_mb: 4096, cpu: 4 });
    expect(Object.values(enterprise!.features as Record<string, boolean>).every(Boolean)).toBe(true);
  });

  test("tier resource and backup policy", async () => {
    const rows = await db.sql`select name, memory_mb, cpus::float as cpus, max_team_members, backup_daily from tiers order by rank`;
    expect(rows.map((r) => [r.name, r.memory_mb, r.cpus, r.max_team_members, r.backup_daily])).toEqual([
      ["free", 512, 0.5, 1, false], ["starter", 1024, 1, 3, true], ["professional", 2048, 2, 10, true], ["enterprise", 4096, 4, null, true],
    ]);
  });

  test("past_due_since and canceled_at follow status; every status change is audited as billing", async () => {
    const c = await createCustomer(db.sql, { tier: "starter" });
    const row = async () => (await db.sql`select past_due_since is not null as due, canceled_at is not null as canceled from subscriptions where id = ${c.subscriptionId}`)[0];
    for (const status of ["past_due", "unpaid", "past_due", "active", "canceled"]) {
      await db.sql`update subscriptions set status = ${status} where id = ${c.subscriptionId}`;
      expect(await row(), status).toEqual({ due: status === "past_due", canceled: status === "canceled" });
    }
    const explicit = new Date("2030-01-02T03:04:05Z");
    const d = await createCustomer(db.sql, { tier: "starter" });
    await db.sql`update subscriptions set status = 'past_due', past_due_since = ${explicit} where id = ${d.subscriptionId}`;
    const [kept] = await db.sql`select past_due_since from subscriptions where id = ${d.subscriptionId}`;
    expect(kept?.past_due_since).toEqual(explicit);
    const audits = await db.sql`
      select details->>'from' as "from", details->>'to' as "to", action_category from audit_logs
      where details->>'subscription_id' = ${c.subscriptionId} and action = 'subscription_status_changed' order by id`;
    expect(audits.map((a) => [a.from, a.to, a.action_category])).toEqual([
      [null, "active", "billing"], ["active", "past_due", "billing"], ["past_due", "unpaid", "billing"],
      ["unpaid", "past_due", "billing"], ["past_due", "active", "billing"], ["active", "canceled", "billing"],
    ]);
  });
});

describe("other triggers and constraints", () => {
  test("updated_at moves on update", async () => {
    const c = await createCustomer(db.sql);
    await db.sql`update accounts set updated_at = now() - interval '1 day' where id = ${c.accountId}`;
    await db.sql`update accounts set full_name = 'x' where id = ${c.accountId}`;
    expect(await countRows(db.sql, "accounts", `id = '${c.accountId}' and updated_at > now() - interval '1 minute'`)).toBe(1);
  });

  test("ticket priority defaults from the tier: priority_support gets high", async () => {
    const [pro] = await db.sql`insert into support_tickets (account_id, subject, description) values (${SEED.account.pro}, 's', 'd') returning priority`;
    const [free] = await db.sql`insert into support_tickets (account_id, subject, description) values (${SEED.account.free}, 's', 'd') returning priority`;
    const [set] = await db.sql`insert into support_tickets (account_id, subject, description, priority) values (${SEED.account.free}, 's', 'd', 'urgent') returning priority`;
    expect([pro?.priority, free?.priority, set?.priority]).toEqual(["high", "normal", "urgent"]);
  });

  test("sign-up creates the account; instance constraints hold", async () => {
    const [user] = await db.sql<{ id: string }[]>`insert into auth.users (email, raw_user_meta_data, email_confirmed_at) values ('new@example.com', '{"full_name": "N"}', now()) returning id`;
    expect(await countRows(db.sql, "accounts", `id = '${user!.id}' and full_name = 'N'`)).toBe(1);
    const c = await createInstance(db.sql);
    const other = await createCustomer(db.sql);
    for (const bad of ["Upper", "ab", "1abc", "ends-", `a${"b".repeat(31)}`, "dots.no"]) {
      expect(await sqlState(db.sql`insert into instances (subscription_id, subdomain) values (${other.subscriptionId}, ${bad})`), bad).toBe(SQLSTATE.checkViolation);
    }
    expect(await sqlState(db.sql`insert into instances (subscription_id, subdomain) values (${c.subscriptionId}, 'second-live')`)).toBe(SQLSTATE.uniqueViolation);
    expect(await sqlState(db.sql`insert into instances (subscription_id, account_id, subdomain) values (${other.subscriptionId}, ${c.accountId}, 'wrong-owner')`)).toBe("23503");
    expect(await sqlState(db.sql`insert into instance_backups (instance_id, status) values (${c.instanceId}, 'completed')`)).toBe(SQLSTATE.checkViolation);
  });
});

describe("an instance's subdomain (migration 0011)", () => {
  test("a rename is refused with a clear error and changes nothing; other updates still pass", async () => {
    const c = await createInstance(db.sql);
    const [before] = await db.sql<{ subdomain: string; generation: number }[]>`select subdomain, generation::int as generation from instances where id = ${c.instanceId}`;
    const rename = db.sql`update instances set subdomain = 'renamed-sub' where id = ${c.instanceId}`;
    await expect(rename).rejects.toMatchObject({
      code: SQLSTATE.checkViolation,
      message: `instance ${c.instanceId}: the subdomain cannot change (${before!.subdomain} -> renamed-sub)`,
      hint: "create a new instance and restore a backup of this one into it",
    });
    expect(await sqlState(db.sql`update instances set subdomain = subdomain, desired_state = 'stopped' where id = ${c.instanceId}`)).toBe("ok");
    const [after] = await db.sql<{ subdomain: string; generation: number }[]>`select subdomain, generation::int as generation from instances where id = ${c.instanceId}`;
    expect(after).toEqual({ subdomain: before!.subdomain, generation: before!.generation + 1 });
  });
});

describe("epoch fencing of instance_operations", () => {
  test("only the current lease epoch may write the journal", async () => {
    const c = await createInstance(db.sql);
    await db.sql`update controller_leases set epoch = 7, holder = 'a' where name = 'reconciler'`;
    const [op] = await db.sql<{ id: string }[]>`
      insert into instance_operations (instance_id, action, target, epoch) values (${c.instanceId}, 'createApp', 'x-matrix', 7) returning id`;
    await db.sql`update controller_leases set epoch = 8, holder = 'b' where name = 'reconciler'`;
    const stale = db.sql`update instance_operations set status = 'succeeded', finished_at = now() where id = ${op!.id}`;
    await expect(stale).rejects.toMatchObject({ code: SQLSTATE.staleLeader, message: "stale leader: epoch 7 is not the current lease epoch 8" });
    expect(await sqlState(db.sql`insert into instance_operations (instance_id, action, target, epoch) values (${c.instanceId}, 'start', 'x', 7)`)).toBe(SQLSTATE.staleLeader);
    expect(await sqlState(db.sql`update instance_operations set status = 'unknown', epoch = 8 where id = ${op!.id}`)).toBe("ok");
  });

  test("a takeover waits for an in-flight journal write of the old leader", async () => {
    const c = await createInstance(db.sql);
    const [lease] = await db.sql<{ epoch: string }[]>`select epoch::text from controller_leases where name = 'reconciler'`;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let inserted!: () => void;
    const insertDone = new Promise<void>((resolve) => (inserted = resolve));
    const writer = db.sql.begin(async (tx) => {
      await tx`insert into instance_operations (instance_id, action, target, epoch) values (${c.instanceId}, 'stop', 'x', ${lease!.epoch})`;
      inserted();
      await held; // keep the transaction (and its share lock on the lease row) open
    });
    await insertDone;
    const takeover = db.sql.begin(async (tx) => {
      await tx`set local lock_timeout = '300ms'`;
      await tx`update controller_leases set epoch = epoch + 1 where name = 'reconciler'`;
    });
    expect(await sqlState(takeover)).toBe(SQLSTATE.lockNotAvailable);
    release();
    await writer;
    expect(await sqlState(db.sql`update controller_leases set epoch = epoch + 1 where name = 'reconciler'`)).toBe("ok");
  });
});

describe("seed", () => {
  test("is idempotent: a second run changes no table's row count", async () => {
    const fresh = await createTestDatabase({ max: 1 });
    try {
      const tables = (await fresh.sql<{ t: string }[]>`
        select relname as t from pg_class where relnamespace = 'public'::regnamespace and relkind = 'r' order by 1`).map((r) => r.t);
      const counts = async () => Object.fromEntries(await Promise.all(tables.map(async (t) => [t, await countRows(fresh.sql, t)])));
      await seed(fresh.sql);
      const once = await counts();
      await seed(fresh.sql);
      expect(await counts()).toEqual(once);
      expect(once).toMatchObject({ accounts: 4, subscriptions: 4, instances: 4, usage_metrics: 28, api_keys: 1, support_tickets: 1 });
      const instances = await fresh.sql`select subdomain, desired_state, status from instances order by subdomain`;
      expect(instances.map((i) => i.subdomain)).toEqual(["demo-enterprise", "demo-free", "demo-pro", "demo-starter"]);
      expect(instances.every((i) => i.desired_state === "running")).toBe(true);
      const [key] = await fresh.sql`select key_hash = encode(sha256('mr_demo_starter_key_0001'::bytea), 'hex') as ok from api_keys`;
      expect(key?.ok).toBe(true);
    } finally {
      await fresh.drop();
    }
  });
});
