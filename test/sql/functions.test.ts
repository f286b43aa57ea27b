/**
 * Every SQL function of migrations/0004 on real data (the seed plus per-test customers), with its
 * bad arguments. Calls run as the superuser (the controller's login) unless a test says otherwise.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createTestDatabase, FLAVORS, type TestDatabase } from "../helpers/db.ts";
import { asRole, countRows, createCustomer, createInstance, SEED, seed, SQLSTATE,sqlState } from "./support.ts";

// The whole matrix runs on plain Postgres and on a Supabase-shaped project (issue 14).
describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;
  const UNKNOWN = "00000000-0000-4000-8000-00000000dead";

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
    await seed(db.sql);
  });

  afterAll(async () => {
    await db?.drop();
  });

  function state(query: Promise<unknown>): Promise<string> {
    return sqlState(query);
  }

  describe("get_user_instance / get_all_user_instances", () => {
    test("return the user's live instance, and every instance newest first", async () => {
      const [current] = await db.sql<{ id: string; subdomain: string }[]>`select id, subdomain from get_user_instance(${SEED.account.pro})`;
      expect(current).toMatchObject({ id: SEED.instance.pro, subdomain: "demo-pro" });

      const c = await createInstance(db.sql, { tier: "starter" });
      await db.sql`update instances set status = 'deprovisioned' where id = ${c.instanceId}`;
      expect(await db.sql`select id from get_user_instance(${c.accountId})`).toHaveLength(0);
      const [next] = await db.sql<{ id: string }[]>`select provision_instance(${c.subscriptionId}, '{}') as id`;
      const all = await db.sql<{ id: string }[]>`select id from get_all_user_instances(${c.accountId})`;
      expect(all.map((r) => r.id)).toEqual([next!.id, c.instanceId]);
      const [live] = await db.sql<{ id: string }[]>`select id from get_user_instance(${c.accountId})`;
      expect(live?.id).toBe(next!.id);
    });

    test("bad arguments", async () => {
      expect(await state(db.sql`select * from get_user_instance(${UNKNOWN})`)).toBe(SQLSTATE.noDataFound);
      expect(await state(db.sql`select * from get_user_instance(null)`)).toBe(SQLSTATE.nullValueNotAllowed);
      expect(await state(db.sql`select * from get_all_user_instances(${UNKNOWN})`)).toBe(SQLSTATE.noDataFound);
    });
  });

  describe("has_active_subscription / check_user_permission", () => {
    test("active and trialing count; canceled does not", async () => {
      const [seeded] = await db.sql<{ ok: boolean }[]>`select has_active_subscription(${SEED.account.free}) as ok`;
      expect(seeded?.ok).toBe(true);
      const c = await createCustomer(db.sql, { tier: "starter", status: "trialing" });
      const active = async () => (await db.sql<{ ok: boolean }[]>`select has_active_subscription(${c.accountId}) as ok`)[0]?.ok;
      expect(await active()).toBe(true);
      await db.sql`update subscriptions set status = 'canceled' where id = ${c.subscriptionId}`;
      expect(await active()).toBe(false);
      expect(await state(db.sql`select has_active_subscription(${UNKNOWN})`)).toBe(SQLSTATE.noDataFound);
    });

    test.each([
      ["free", SEED.account.free, "voice", false],
      ["starter", SEED.account.starter, "voice", true],
      ["starter", SEED.account.starter, "custom_agents", false],
      ["professional", SEED.account.pro, "priority_support", true],
      ["professional", SEED.account.pro, "sla", false],
      ["enterprise", SEED.account.enterprise, "sla", true],
    ])("%s tier: %s has %s = %s", async (_tier, account, permission, want) => {
      const [row] = await db.sql<{ ok: boolean }[]>`select check_user_permission(${account}, ${permission}) as ok`;
      expect(row?.ok).toBe(want);
    });

    test("admins may do everything; past_due keeps features; unknown permissions raise", async () => {
      const c = await createCustomer(db.sql, { tier: "starter", status: "past_due" });
      const can = async (p: string) => (await db.sql<{ ok: boolean }[]>`select check_user_permission(${c.accountId}, ${p}) as ok`)[0]?.ok;
      expect(await can("voice")).toBe(true);
      expect(await can("sla")).toBe(false);
      await db.sql`update accounts set is_admin = true where id = ${c.accountId}`;
      expect(await can("sla")).toBe(true);
      expect(await state(db.sql`select check_user_permission(${c.accountId}, 'fly')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select check_user_permission(${c.accountId}, null)`)).toBe(SQLSTATE.invalidParameterValue);
    });
  });

  describe("track_usage / check_usage_limits / reset_daily_usage", () => {
    test("counts messages, agents, tools and platforms; stamps the instance; reports limits", async () => {
      const c = await createInstance(db.sql, { tier: "free" });
      const first = await db.sql<{ r: Record<string, unknown> }[]>`select track_usage(${c.instanceId}, 'bot', 'search', 'slack') as r`;
      expect(first[0]?.r).toMatchObject({ tier: "free", within_limits: true, exceeded: [] });
      const [second] = await db.sql<{ r: { exceeded: string[]; within_limits: boolean; limits: Record<string, unknown> } }[]>`
        select track_usage(${c.instanceId}, 'bot2', null, 'telegram', 'received') as r`;
      expect(second?.r.exceeded).toEqual(["agents", "platforms"]); // free: 1 agent, 1 platform
      expect(second?.r.limits.messages_per_day).toEqual({ used: 2, limit: 100, remaining: 98 });

      const [row] = await db.sql`
        select messages_sent, messages_received, agents_used, agents, tools_used, platforms_active
        from usage_metrics where instance_id = ${c.instanceId} and date = (now() at time zone 'utc')::date`;
      expect(row).toEqual({
        messages_sent: 1, messages_received: 1, agents_used: 2, agents: { bot: 1, bot2: 1 },
        tools_used: { search: 1 }, platforms_active: { slack: 1, telegram: 1 },
      });
      const [sub] = await db.sql`select messages_today from subscriptions where id = ${c.subscriptionId}`;
      expect(sub?.messages_today).toBe(2);
      const [inst] = await db.sql`select last_usage_at is not null as used from instances where id = ${c.instanceId}`;
      expect(inst?.used).toBe(true);
    });

    test("a message over the daily limit is reported; NULL limits are unlimited", async () => {
      const c = await createInstance(db.sql, { tier: "free" });
      await db.sql`update subscriptions set messages_today = 100, usage_reset_at = now() where id = ${c.subscriptionId}`;
      const [over] = await db.sql<{ r: { exceeded: string[]; within_limits: boolean } }[]>`select track_usage(${c.instanceId}, 'bot') as r`;
      expect(over?.r).toMatchObject({ within_limits: false, exceeded: ["messages_per_day"] });

      const e = await createInstance(db.sql, { tier: "enterprise" });
      await db.sql`update subscriptions set messages_today = 1000000, usage_reset_at = now() where id = ${e.subscriptionId}`;
      const [unlimited] = await db.sql<{ r: { within_limits: boolean; limits: Record<string, unknown> } }[]>`
        select check_usage_limits(${e.instanceId}) as r`;
      expect(unlimited?.r.within_limits).toBe(true);
      expect(unlimited?.r.limits.messages_per_day).toEqual({ used: 1000000, limit: null, remaining: null });
    });

    test("a counter from an earlier UTC day counts as zero and restarts", async () => {
      const c = await createInstance(db.sql, { tier: "starter" });
      await db.sql`update subscriptions set messages_today = 999, usage_reset_at = now() - interval '2 days' where id = ${c.subscriptionId}`;
      const [r] = await db.sql<{ r: { limits: { messages_per_day: { used: number } } } }[]>`select check_usage_limits(${c.instanceId}) as r`;
      expect(r?.r.limits.messages_per_day.used).toBe(0);
      await db.sql`select track_usage(${c.instanceId}, 'bot')`;
      const [sub] = await db.sql`select messages_today from subscriptions where id = ${c.subscriptionId}`;
      expect(sub?.messages_today).toBe(1);
    });

    test("reset_daily_usage zeroes every counter and returns how many", async () => {
      const c = await createInstance(db.sql, { tier: "starter" });
      await db.sql`select track_usage(${c.instanceId}, 'bot')`;
      const [r] = await db.sql<{ n: number }[]>`select reset_daily_usage() as n`;
      expect(r!.n).toBeGreaterThanOrEqual(1);
      expect(await countRows(db.sql, "subscriptions", "messages_today <> 0")).toBe(0);
      const [again] = await db.sql<{ n: number }[]>`select reset_daily_usage() as n`;
      expect(again!.n).toBe(0);
    });

    test("bad arguments", async () => {
      const c = await createInstance(db.sql, { tier: "free" });
      expect(await state(db.sql`select track_usage(${UNKNOWN}, 'bot')`)).toBe(SQLSTATE.noDataFound);
      expect(await state(db.sql`select track_usage(${c.instanceId}, '')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select track_usage(${c.instanceId}, 'bot', null, null, 'sideways')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select check_usage_limits(${UNKNOWN})`)).toBe(SQLSTATE.noDataFound);
      expect(await state(db.sql`select check_usage_limits(null)`)).toBe(SQLSTATE.nullValueNotAllowed);
      await db.sql`update instances set status = 'deprovisioned' where id = ${c.instanceId}`;
      expect(await state(db.sql`select track_usage(${c.instanceId}, 'bot')`)).toBe(SQLSTATE.notInPrerequisiteState);
    });
  });

  describe("get_billing_metrics", () => {
    test("sums the seeded week and counts distinct agents, tools, platforms", async () => {
      const [m] = await db.sql<{ r: Record<string, unknown> }[]>`
        select get_billing_metrics(${SEED.account.pro}, current_date - 30, current_date + 1) as r`;
      const [want] = await db.sql`
        select sum(messages_sent)::int as sent, sum(messages_received)::int as received, sum(errors)::int as errors,
               count(distinct date)::int as days, max(storage_bytes)::bigint as peak
        from usage_metrics where account_id = ${SEED.account.pro}`;
      expect(m?.r).toMatchObject({
        account_id: SEED.account.pro, messages_sent: want!.sent, messages_received: want!.received,
        messages_total: want!.sent + want!.received, errors: want!.errors, days_with_usage: want!.days,
        distinct_agents: 3, distinct_tools: 2, distinct_platforms: 3, peak_storage_bytes: Number(want!.peak),
      });
      expect(want!.days).toBe(7);
      expect(m?.r.instances).toEqual([expect.objectContaining({ instance_id: SEED.instance.pro, subdomain: "demo-pro" })]);
    });

    test("an empty period is zeros; bad arguments raise", async () => {
      const [m] = await db.sql<{ r: Record<string, unknown> }[]>`select get_billing_metrics(${SEED.account.pro}, '2001-01-01', '2001-01-31') as r`;
      expect(m?.r).toMatchObject({ messages_total: 0, distinct_agents: 0, instances: [] });
      expect(await state(db.sql`select get_billing_metrics(${SEED.account.pro}, '2001-02-01', '2001-01-01')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select get_billing_metrics(${SEED.account.pro}, null, '2001-01-01')`)).toBe(SQLSTATE.nullValueNotAllowed);
      expect(await state(db.sql`select get_billing_metrics(${UNKNOWN}, '2001-01-01', '2001-01-02')`)).toBe(SQLSTATE.noDataFound);
    });
  });

  describe("provision_instance / deprovision_instance", () => {
    test("inserts desired state with a valid generated subdomain and audits it", async () => {
      const c = await createCustomer(db.sql, { tier: "professional" });
      const [r] = await db.sql<{ id: string }[]>`select provision_instance(${c.subscriptionId}, '{"agents": ["a"]}') as id`;
      const [i] = await db.sql`
        select subdomain, status, desired_state, account_id, config, memory_limit_mb, cpu_limit::float as cpu, generation
        from instances where id = ${r!.id}`;
      expect(i?.subdomain).toMatch(/^[a-z][a-z0-9-]{2,30}$/);
      expect(i).toMatchObject({ status: "pending", desired_state: null, account_id: c.accountId, config: { agents: ["a"] }, memory_limit_mb: 2048, cpu: 2 });
      expect(await countRows(db.sql, "audit_logs", `instance_id = '${r!.id}' and action = 'instance_provision_requested'`)).toBe(1);
    });

    test("a second live instance is refused, also when two calls race; after teardown a new one is allowed", async () => {
      const c = await createCustomer(db.sql, { tier: "starter" });
      const calls = await Promise.allSettled([0, 1, 2].map(() => db.sql`select provision_instance(${c.subscriptionId}, null) as id`));
      expect(calls.filter((x) => x.status === "fulfilled")).toHaveLength(1);
      for (const failed of calls.filter((x) => x.status === "rejected")) {
        expect((failed.reason as { code: string; message: string }).code).toBe(SQLSTATE.uniqueViolation);
        expect((failed.reason as { message: string }).message).toMatch(/already has a live instance/);
      }
      await db.sql`update instances set status = 'deprovisioned' where subscription_id = ${c.subscriptionId}`;
      expect(await state(db.sql`select provision_instance(${c.subscriptionId})`)).toBe("ok");
    });

    test.each(["incomplete", "incomplete_expired", "canceled"])("refused for a %s subscription", async (status) => {
      const c = await createCustomer(db.sql, { tier: "starter", status });
      expect(await state(db.sql`select provision_instance(${c.subscriptionId}, '{}')`)).toBe(SQLSTATE.notInPrerequisiteState);
    });

    test("provision bad arguments", async () => {
      const c = await createCustomer(db.sql);
      expect(await state(db.sql`select provision_instance(${UNKNOWN}, '{}')`)).toBe(SQLSTATE.noDataFound);
      expect(await state(db.sql`select provision_instance(null, '{}')`)).toBe(SQLSTATE.nullValueNotAllowed);
      expect(await state(db.sql`select provision_instance(${c.subscriptionId}, '[1]')`)).toBe(SQLSTATE.invalidParameterValue);
    });

    test("deprovision sets the desired state once, audits the reason, and needs a reason", async () => {
      const c = await createInstance(db.sql, { tier: "starter" });
      expect(await state(db.sql`select deprovision_instance(${c.instanceId}, '  ')`)).toBe(SQLSTATE.nullValueNotAllowed);
      expect(await state(db.sql`select deprovision_instance(${UNKNOWN}, 'x')`)).toBe(SQLSTATE.noDataFound);
      const [first] = await db.sql<{ changed: boolean }[]>`select deprovision_instance(${c.instanceId}, 'customer left') as changed`;
      const [second] = await db.sql<{ changed: boolean }[]>`select deprovision_instance(${c.instanceId}, 'again') as changed`;
      expect([first?.changed, second?.changed]).toEqual([true, false]);
      const [i] = await db.sql`select desired_state from instances where id = ${c.instanceId}`;
      expect(i?.desired_state).toBe("deprovisioned");
      const [audit] = await db.sql`select details from audit_logs where instance_id = ${c.instanceId} and action = 'instance_deprovision_requested'`;
      expect(audit?.details).toMatchObject({ reason: "customer left" });
    });

    test("a user provisions and deprovisions their own instance", async () => {
      const c = await createCustomer(db.sql, { tier: "starter" });
      const id = await asRole(db.sql, "authenticated", c.accountId, async (tx) => {
        const [r] = await tx<{ id: string }[]>`select provision_instance(${c.subscriptionId}, '{}') as id`;
        await tx`select deprovision_instance(${r!.id}, 'not needed')`;
        return r!.id;
      });
      const [audit] = await db.sql`select actor from audit_logs where instance_id = ${id} and action = 'instance_deprovision_requested'`;
      expect(audit?.actor).toBe(`user:${c.accountId}`);
    });
  });

  describe("update_instance_health", () => {
    test("records health, returns the previous value, audits critical transitions only", async () => {
      const c = await createInstance(db.sql);
      const call = async (s: string) => (await db.sql<{ prev: string }[]>`select update_instance_health(${c.instanceId}, ${s}, '{"backend": false}') as prev`)[0]?.prev;
      expect(await call("healthy")).toBe("unknown");
      expect(await call("degraded")).toBe("healthy");
      expect(await call("critical")).toBe("degraded");
      expect(await call("critical")).toBe("critical");
      expect(await call("healthy")).toBe("critical");
      const [i] = await db.sql`select health_status, health_details, last_health_check is not null as checked from instances where id = ${c.instanceId}`;
      expect(i).toEqual({ health_status: "healthy", health_details: { backend: false }, checked: true });
      const audits = await db.sql`select details->>'to' as to from audit_logs where instance_id = ${c.instanceId} and action_category = 'health' order by id`;
      expect(audits.map((a) => a.to)).toEqual(["critical", "healthy"]);
      expect(await state(db.sql`select update_instance_health(${c.instanceId}, 'sick')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select update_instance_health(${UNKNOWN}, 'healthy')`)).toBe(SQLSTATE.noDataFound);
    });
  });

  describe("calculate_storage_usage", () => {
    test("latest measurement, else newest completed backup per component, else 0", async () => {
      const [seeded] = await db.sql<{ b: string }[]>`select calculate_storage_usage(${SEED.instance.pro}) as b`;
      const [latest] = await db.sql<{ b: string }[]>`
        select storage_bytes as b from usage_metrics where instance_id = ${SEED.instance.pro} order by date desc limit 1`;
      expect(seeded?.b).toBe(latest?.b);

      const c = await createInstance(db.sql);
      const [none] = await db.sql<{ b: string }[]>`select calculate_storage_usage(${c.instanceId}) as b`;
      expect(none?.b).toBe("0");
      await db.sql`delete from usage_metrics where instance_id = ${c.instanceId}`;
      await db.sql`
        insert into instance_backups (instance_id, component, status, location, size_bytes, sha256, completed_at) values
          (${c.instanceId}, 'matrix', 'completed', 'a', 100, repeat('a', 64), now() - interval '2 days'),
          (${c.instanceId}, 'matrix', 'completed', 'b', 300, repeat('a', 64), now() - interval '1 day'),
          (${c.instanceId}, 'backend', 'completed', 'c', 50, repeat('a', 64), now())`;
      const [fromBackups] = await db.sql<{ b: string }[]>`select calculate_storage_usage(${c.instanceId}) as b`;
      expect(fromBackups?.b).toBe("350");
      const [recorded] = await db.sql`select storage_bytes::int as b from usage_metrics where instance_id = ${c.instanceId}`;
      expect(recorded?.b).toBe(350);
      expect(await state(db.sql`select calculate_storage_usage(${UNKNOWN})`)).toBe(SQLSTATE.noDataFound);
      const [all] = await db.sql<{ n: number }[]>`select calculate_all_storage_usage() as n`;
      expect(all!.n).toBe(await countRows(db.sql, "instances", "status <> 'deprovisioned'"));
    });
  });

  describe("cleanup_expired_data", () => {
    test("deletes old audit logs, health checks, processed events; leaves backups to the controller's retention; keeps the rest", async () => {
      const c = await createInstance(db.sql);
      await db.sql`
        insert into audit_logs (account_id, action, action_category, created_at) values
          (${c.accountId}, 'old', 'system', now() - interval '91 days'), (${c.accountId}, 'recent', 'system', now() - interval '89 days')`;
      await db.sql`
        insert into health_checks (instance_id, component, ok, checked_at) values
          (${c.instanceId}, 'backend', true, now() - interval '31 days'), (${c.instanceId}, 'backend', true, now() - interval '1 day')`;
      await db.sql`
        insert into stripe_events (id, type, created, payload, status, processed_at, received_at) values
          ('evt_old', 't', now(), '{}', 'processed', now() - interval '31 days', now() - interval '31 days'),
          ('evt_old_pending', 't', now(), '{}', 'pending', null, now() - interval '40 days'),
          ('evt_new', 't', now(), '{}', 'processed', now(), now())`;
      await db.sql`
        insert into instance_backups (instance_id, status, location, size_bytes, sha256, expires_at) values
          (${c.instanceId}, 'completed', 'x', 1, repeat('a', 64), now() - interval '1 hour'),
          (${c.instanceId}, 'completed', 'y', 1, repeat('a', 64), now() + interval '1 day')`;
      const [r] = await db.sql<{ r: Record<string, number> }[]>`select cleanup_expired_data() as r`;
      expect(r?.r).toEqual({ audit_logs_deleted: 1, health_checks_deleted: 1, stripe_events_deleted: 1, notifications_deleted: 0 });
      expect(await countRows(db.sql, "stripe_events", "id in ('evt_old_pending', 'evt_new')")).toBe(2);
      expect(await countRows(db.sql, "audit_logs", `account_id = '${c.accountId}' and action = 'recent'`)).toBe(1);
      // Expiry deletes the object before marking the row (runtime/backup-jobs.ts): SQL alone cannot.
      expect(await countRows(db.sql, "instance_backups", `instance_id = '${c.instanceId}' and status = 'completed'`)).toBe(2);
    });
  });

  describe("auto_pause_inactive_instances", () => {
    test("stops free instances idle for 7 days, once; a resume restarts the clock", async () => {
      await db.sql`update instances set last_usage_at = now(), created_at = now()`; // earlier tests' instances are active
      const idle = await createInstance(db.sql, { tier: "free" });
      const paidIdle = await createInstance(db.sql, { tier: "starter" });
      const week = "now() - interval '8 days'";
      for (const id of [idle.instanceId, paidIdle.instanceId]) {
        await db.sql.unsafe(`update instances set last_usage_at = ${week}, created_at = ${week}, provisioned_at = ${week} where id = $1`, [id]);
      }
      const [r] = await db.sql<{ n: number }[]>`select auto_pause_inactive_instances() as n`;
      expect(r!.n).toBe(1);
      const rows = await db.sql`select id, desired_state from instances where id in ${db.sql([idle.instanceId, paidIdle.instanceId])}`;
      expect(Object.fromEntries(rows.map((x) => [x.id, x.desired_state]))).toEqual({ [idle.instanceId]: "stopped", [paidIdle.instanceId]: null });
      expect(await countRows(db.sql, "audit_logs", `instance_id = '${idle.instanceId}' and action = 'instance_auto_paused'`)).toBe(1);
      const [again] = await db.sql<{ n: number }[]>`select auto_pause_inactive_instances() as n`;
      expect(again!.n).toBe(0);
      await db.sql`update instances set desired_state = 'running' where id = ${idle.instanceId}`;
      const [afterResume] = await db.sql<{ n: number }[]>`select auto_pause_inactive_instances() as n`;
      expect(afterResume!.n).toBe(0);
    });
  });

  describe("create_api_key / verify_api_key", () => {
    test("the plain key is returned once, stored hashed, and verifies until revoked", async () => {
      const c = await createCustomer(db.sql);
      const [k] = await db.sql<{ id: string; api_key: string; key_prefix: string }[]>`select * from create_api_key(${c.accountId}, 'ci')`;
      expect(k?.api_key).toMatch(/^mr_[0-9a-f]{64}$/);
      const [stored] = await db.sql`select key_hash, key_prefix from api_keys where id = ${k!.id}`;
      expect(stored?.key_hash).not.toContain(k!.api_key.slice(3));
      expect(stored?.key_prefix).toBe(k!.api_key.slice(0, 11));
      const [ok] = await db.sql`select * from verify_api_key(${k!.api_key})`;
      expect(ok).toMatchObject({ api_key_id: k!.id, account_id: c.accountId, permissions: ["read"] });
      expect(await db.sql`select * from verify_api_key('mr_wrong')`).toHaveLength(0);
      await db.sql`update api_keys set is_active = false where id = ${k!.id}`;
      expect(await db.sql`select * from verify_api_key(${k!.api_key})`).toHaveLength(0);
      const [seeded] = await db.sql`select account_id from verify_api_key('mr_demo_starter_key_0001')`;
      expect(seeded?.account_id).toBe(SEED.account.starter);
      expect(await state(db.sql`select * from create_api_key(${c.accountId}, '')`)).toBe(SQLSTATE.nullValueNotAllowed);
      expect(await state(db.sql`select * from create_api_key(${c.accountId}, 'x', '{}')`)).toBe(SQLSTATE.invalidParameterValue);
      expect(await state(db.sql`select * from create_api_key(${UNKNOWN}, 'x')`)).toBe(SQLSTATE.noDataFound);
    });
  });
});
