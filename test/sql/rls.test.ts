/**
 * Row Level Security matrix, driven by a table of tables: every table in `public` must appear in
 * MATRIX and have RLS enabled, so a new table without RLS (or without a decision here) fails.
 * Users are the seed's starter account (USER) and professional account (OTHER).
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createTestDatabase, FLAVORS, type TestDatabase } from "../helpers/db.ts";
import { asRole, countRows, SEED, seed, SQLSTATE,sqlState } from "./support.ts";

const USER = SEED.account.starter;
const OTHER = SEED.account.pro;

/** How `authenticated` reads a table: its own rows (owner = SQL giving the owning account), all, or not at all. */
type Read = { kind: "own"; owner: string } | { kind: "all" } | { kind: "none" };

const MATRIX: Record<string, Read> = {
  accounts: { kind: "own", owner: "id" },
  subscriptions: { kind: "own", owner: "account_id" },
  instances: { kind: "own", owner: "account_id" },
  usage_metrics: { kind: "own", owner: "account_id" },
  audit_logs: { kind: "own", owner: "account_id" },
  support_tickets: { kind: "own", owner: "account_id" },
  api_keys: { kind: "own", owner: "account_id" },
  instance_backups: { kind: "own", owner: "(select i.account_id from public.instances i where i.id = instance_id)" },
  tiers: { kind: "all" },
  stripe_events: { kind: "none" },
  dokku_hosts: { kind: "none" },
  instance_operations: { kind: "none" },
  health_checks: { kind: "none" },
  notifications: { kind: "none" },
  controller_leases: { kind: "none" },
  scheduled_jobs: { kind: "none" },
  schema_migrations: { kind: "none" },
  instance_overrides: { kind: "none" },
  tenant_quotas: { kind: "none" },
  instance_restores: { kind: "none" },
  stripe_customers: { kind: "none" },
  api_rate_buckets: { kind: "none" },
  api_idempotency_keys: { kind: "none" },
};

// The whole matrix runs on plain Postgres and on a Supabase-shaped project (issue 14).
describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
    await seed(db.sql);
    // Rows in every table for both users, so "sees only their own" is never vacuously true.
    const sql = db.sql;
    await sql`insert into api_keys (account_id, name, key_hash, key_prefix) values (${OTHER}, 'other', repeat('b', 64), 'mr_other')`;
    await sql`insert into support_tickets (account_id, subject, description) values (${USER}, 'help', 'please')`;
    await sql`
      insert into instance_backups (instance_id, backup_type, status)
      values (${SEED.instance.starter}, 'automatic', 'requested'), (${SEED.instance.pro}, 'manual', 'requested')`;
    const [host] = await sql<{ id: string }[]>`insert into dokku_hosts (name, ssh_url) values ('h1', 'ssh://dokku@127.0.0.1:22') returning id`;
    await sql`
      insert into stripe_events (id, type, customer_id, created, payload)
      values ('evt_1', 'customer.subscription.updated', 'cus_demo_starter', now(), '{}')`;
    await sql`insert into instance_operations (instance_id, action, target, epoch) values (${SEED.instance.starter}, 'createApp', 'demo-starter-matrix', 0)`;
    await sql`insert into health_checks (instance_id, component, ok) values (${SEED.instance.starter}, 'backend', true)`;
    await sql`insert into api_rate_buckets (bucket, tokens, updated_at) values ('key:x', 1, now())`;
    await sql`insert into api_idempotency_keys (account_id, idempotency_key, fingerprint) values (${USER}, 'k', ${"0".repeat(64)})`;
    await sql`
      insert into notifications (account_id, kind, dedupe_key, recipient, subject, body)
      values (${USER}, 'welcome', 'welcome:x', 'demo-starter@example.com', 'Hi', 'Welcome')`;
    expect(host?.id).toBeTruthy();
  });

  afterAll(async () => {
    await db?.drop();
  });

  describe("coverage", () => {
    test("every table in public has RLS enabled and a row in the matrix", async () => {
      const tables = await db.sql<{ relname: string; relrowsecurity: boolean }[]>`
        select relname, relrowsecurity from pg_class
        where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') order by relname`;
      expect(tables.filter((t) => !t.relrowsecurity).map((t) => t.relname)).toEqual([]);
      expect(tables.map((t) => t.relname).sort()).toEqual(Object.keys(MATRIX).sort());
    });

    test("the fixture has rows of both users in every per-user table", async () => {
      for (const [table, read] of Object.entries(MATRIX)) {
        if (read.kind !== "own") continue;
        expect(await countRows(db.sql, table, `${read.owner} = '${USER}'`), table).toBeGreaterThan(0);
        expect(await countRows(db.sql, table, `${read.owner} = '${OTHER}'`), table).toBeGreaterThan(0);
      }
    });
  });

  describe.each(Object.entries(MATRIX))("reading %s", (table, read) => {
    test("authenticated sees exactly its own rows (or all, or nothing)", async () => {
      const seen = asRole(db.sql, "authenticated", USER, (tx) => countRows(tx, table));
      switch (read.kind) {
        case "own":
          expect(await seen).toBe(await countRows(db.sql, table, `${read.owner} = '${USER}'`));
          expect(await asRole(db.sql, "authenticated", USER, (tx) => countRows(tx, table, `${read.owner} = '${OTHER}'`))).toBe(0);
          break;
        case "all":
          expect(await seen).toBe(await countRows(db.sql, table));
          break;
        case "none":
          expect(await sqlState(seen)).toBe(SQLSTATE.insufficientPrivilege);
          break;
      }
    });

    test("authenticated without a sub claim sees nothing of users", async () => {
      const seen = asRole(db.sql, "authenticated", null, (tx) => countRows(tx, table));
      if (read.kind === "own") expect(await seen).toBe(0);
      if (read.kind === "none") expect(await sqlState(seen)).toBe(SQLSTATE.insufficientPrivilege);
    });

    test("anon sees nothing", async () => {
      expect(await sqlState(asRole(db.sql, "anon", null, (tx) => countRows(tx, table)))).toBe(SQLSTATE.insufficientPrivilege);
    });

    test("service_role sees everything", async () => {
      const all = await countRows(db.sql, table);
      expect(await asRole(db.sql, "service_role", null, (tx) => countRows(tx, table))).toBe(all);
    });
  });

  /** The SQLSTATE of one statement run as USER (rolled back by the caller's expectations or not). */
  function asUser(statement: string): Promise<string> {
    return sqlState(asRole(db.sql, "authenticated", USER, (tx) => tx.unsafe(statement)));
  }

  /** Rows changed by one statement run as USER. */
  async function changedAsUser(statement: string): Promise<number> {
    const result = await asRole(db.sql, "authenticated", USER, (tx) => tx.unsafe(statement));
    return result.count;
  }

  describe("writes as authenticated", () => {
    test.each([
      ["insert subscription", `insert into subscriptions (account_id, status) values ('${USER}', 'active')`],
      ["update subscription tier", `update subscriptions set tier = 'enterprise'`],
      ["update subscription status", `update subscriptions set status = 'active'`],
      ["delete subscription", `delete from subscriptions`],
      ["account is_admin", `update accounts set is_admin = true`],
      ["account stripe_customer_id", `update accounts set stripe_customer_id = 'cus_stolen'`],
      ["account email", `update accounts set email = 'x@example.com'`],
      ["insert account", `insert into accounts (email) values ('new@example.com')`],
      ["instance status", `update instances set status = 'running'`],
      ["instance host_id", `update instances set host_id = null`],
      ["instance subdomain", `update instances set subdomain = 'stolen'`],
      ["instance generation", `update instances set generation = generation + 1`],
      ["instance conditions", `update instances set conditions = '[]'`],
      ["instance config", `update instances set config = '{}'`],
      ["instance reconcile_paused", `update instances set reconcile_paused = true`],
      ["instance memory", `update instances set memory_limit_mb = 99999`],
      ["insert instance", `insert into instances (subscription_id, subdomain) values ('${SEED.subscription.starter}', 'mine-too')`],
      ["delete instance", `delete from instances`],
      ["insert audit log", `insert into audit_logs (account_id, action, action_category) values ('${USER}', 'forged', 'billing')`],
      ["update audit log", `update audit_logs set success = false`],
      ["delete audit log", `delete from audit_logs`],
      ["insert usage", `insert into usage_metrics (instance_id, account_id, date) values ('${SEED.instance.starter}', '${USER}', '2000-01-01')`],
      ["update usage", `update usage_metrics set messages_sent = 0`],
      ["backup with status completed", `insert into instance_backups (instance_id, status) values ('${SEED.instance.starter}', 'completed')`],
      ["update backup", `update instance_backups set status = 'completed'`],
      ["ticket priority", `insert into support_tickets (subject, description, priority) values ('a', 'b', 'urgent')`],
      ["ticket status", `update support_tickets set status = 'resolved'`],
      ["update tiers", `update tiers set max_agents = 1000`],
      ["insert lease", `insert into controller_leases (name) values ('x')`],
      ["insert operation", `insert into instance_operations (instance_id, action, target, epoch) values ('${SEED.instance.starter}', 'x', 'y', 0)`],
      ["call reset_daily_usage", `select reset_daily_usage()`],
      ["call track_usage", `select track_usage('${SEED.instance.starter}', 'bot')`],
      ["call update_instance_health", `select update_instance_health('${SEED.instance.starter}', 'healthy')`],
    ["insert an API key directly", `insert into api_keys (name, key_hash, key_prefix, permissions) values ('k', repeat('c', 64), 'mr_c', '{superuser}')`],
    ["insert an API key for another account", `insert into api_keys (account_id, name, key_hash, key_prefix) values ('${OTHER}', 'k', repeat('c', 64), 'mr_c')`],
    ["update API key permissions", `update api_keys set permissions = '{instances:write}'`],
    ["update API key prefix", `update api_keys set key_prefix = 'mr_other'`],
    ["re-activate an API key", `update api_keys set is_active = true`],
    ["delete another user's API key", `delete from api_keys where account_id = '${OTHER}'`],
    ["read API key hashes", `select key_hash from api_keys`],
    ])("refused: %s", async (_name, statement) => {
      expect(await asUser(statement)).toBe(SQLSTATE.insufficientPrivilege);
    });

    test.each([
      ["another account's profile", `update accounts set full_name = 'x' where id = '${OTHER}'`],
      ["another user's instance", `update instances set desired_state = 'stopped' where account_id = '${OTHER}'`],
      ["another user's ticket", `update support_tickets set subject = 'x' where account_id = '${OTHER}'`],
    ])("invisible, so nothing changes: %s", async (_name, statement) => {
      expect(await changedAsUser(statement)).toBe(0);
    });

    test.each([
      ["a backup of another user's instance", `insert into instance_backups (instance_id) values ('${SEED.instance.pro}')`],
      ["an automatic backup", `insert into instance_backups (instance_id, backup_type) values ('${SEED.instance.starter}', 'automatic')`],
      ["a ticket for another account", `insert into support_tickets (account_id, subject, description) values ('${OTHER}', 'a', 'b')`],
      ["a ticket about another user's instance", `insert into support_tickets (instance_id, subject, description) values ('${SEED.instance.pro}', 'a', 'b')`],
      ["desired_state deprovisioned (teardown goes through deprovision_instance)", `update instances set desired_state = 'deprovisioned'`],
    ])("refused by policy: %s", async (_name, statement) => {
      expect(await asUser(statement)).toBe(SQLSTATE.insufficientPrivilege);
    });

    test("allowed on own rows: profile, pause/resume, backup request, API keys (through their functions), tickets", async () => {
      const backups = await countRows(db.sql, "instance_backups", `instance_id = '${SEED.instance.starter}'`);
      await asRole(db.sql, "authenticated", USER, async (tx) => {
        expect((await tx`update accounts set full_name = 'Renamed', company_name = 'Co'`).count).toBe(1);
        expect((await tx`update instances set desired_state = 'stopped'`).count).toBe(1);
        expect((await tx`update instances set desired_state = 'running'`).count).toBe(1);
        expect((await tx`insert into instance_backups (instance_id) values (${SEED.instance.starter})`).count).toBe(1);
        const [key] = await tx<{ id: string }[]>`select id from create_api_key(${USER}, 'mine', '{instances:read}')`;
        expect((await tx<{ revoked: boolean }[]>`select revoke_api_key(${key!.id}) as revoked`)[0]?.revoked).toBe(true);
        const [ticket] = await tx<{ priority: string }[]>`
          insert into support_tickets (instance_id, subject, description) values (${SEED.instance.starter}, 's', 'd') returning priority`;
        expect(ticket?.priority).toBe("normal"); // starter has no priority_support
      });
      expect(await countRows(db.sql, "instance_backups", `instance_id = '${SEED.instance.starter}'`)).toBe(backups + 1);
      expect(await countRows(db.sql, "accounts", `id = '${USER}' and full_name = 'Renamed' and not is_admin`)).toBe(1);
    });

    test("dashboard functions refuse another user's data and anon", async () => {
      for (const call of [
        `select * from get_user_instance('${OTHER}')`,
        `select * from get_all_user_instances('${OTHER}')`,
        `select has_active_subscription('${OTHER}')`,
        `select check_user_permission('${OTHER}', 'voice')`,
        `select get_billing_metrics('${OTHER}', current_date - 7, current_date)`,
        `select * from create_api_key('${OTHER}', 'stolen')`,
      ]) {
        expect(await asUser(call), call).toBe(SQLSTATE.insufficientPrivilege);
        expect(await sqlState(asRole(db.sql, "anon", null, (tx) => tx.unsafe(call))), call).toBe(SQLSTATE.insufficientPrivilege);
      }
      // Ids of instances and subscriptions: another user's is "unknown", like one that never existed.
      for (const call of [
        `select check_usage_limits('${SEED.instance.pro}')`,
        `select provision_instance('${SEED.subscription.pro}', '{}')`,
        `select deprovision_instance('${SEED.instance.pro}', 'mine now')`,
      ]) {
        expect(await asUser(call), call).toBe(SQLSTATE.noDataFound);
        expect(await sqlState(asRole(db.sql, "anon", null, (tx) => tx.unsafe(call))), call).toBe(SQLSTATE.insufficientPrivilege);
      }
      const [own] = await asRole(db.sql, "authenticated", USER, (tx) => tx<{ id: string }[]>`select id from get_user_instance(${USER})`);
      expect(own?.id).toBe(SEED.instance.starter);
    });
  });
});
