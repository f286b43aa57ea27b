/**
 * Issue 14 on plain Postgres and on a Supabase-shaped project: nothing a tenant writes reaches a
 * host, no existence oracle, no pre-claiming by an unconfirmed email, bounded tenant writes.
 */

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { desiredInstance } from "../../src/reconciler/desired.ts";
import { DEFAULT_TEMPLATE, templateRepositories } from "../../src/reconciler/template.ts";
import { upsertAccountFromCustomer } from "../../src/state/billing.ts";
import { createInstanceStore } from "../../src/state/instances.ts";
import { migrate } from "../../src/state/migrate.ts";
import { createEmptyDatabase, createTestDatabase, FLAVORS, migrateThrough, type TestDatabase } from "../helpers/db.ts";
import { asRole, countRows, createCustomer, createInstance, SQLSTATE, sqlState } from "./support.ts";

const RATE_LIMITED = "PT429";
const ATTACK = { components: { backend: { image: "attacker/miner:latest", env: { LD_PRELOAD: "/tmp/x.so" } } } };

/** Every input of desired state (reconciler/desired.ts, state/instances.ts loadSubject). */
const DESIRED_STATE_INPUTS: Record<string, readonly string[] | "all"> = {
  instances: ["desired_state", "reconcile_paused", "host_id", "subdomain", "memory_limit_mb", "cpu_limit", "subscription_id", "account_id", "generation"],
  instance_overrides: "all",
  subscriptions: "all",
  tiers: "all",
  dokku_hosts: "all",
};

describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
  });

  afterAll(async () => {
    await db?.drop();
  });

  describe("nothing a tenant writes reaches a host", () => {
    test("the issue's reproduction: provision_instance with an image and env is refused and inserts nothing", async () => {
      const c = await createCustomer(db.sql);
      const call = asRole(db.sql, "authenticated", c.accountId, (tx) => tx`select public.provision_instance(${c.subscriptionId}, ${tx.json(ATTACK)})`);
      expect(await sqlState(call)).toBe(SQLSTATE.insufficientPrivilege);
      expect(await countRows(db.sql, "instances", `subscription_id = '${c.subscriptionId}'`)).toBe(0);
    });

    test("product settings a tenant may choose are stored, and desired state is the template's", async () => {
      const c = await createCustomer(db.sql);
      const settings = { image: "attacker/miner:latest", env: { LD_PRELOAD: "/tmp/x.so" }, agents: ["assistant"] };
      await asRole(db.sql, "authenticated", c.accountId, (tx) => tx`select public.provision_instance(${c.subscriptionId}, ${tx.json(settings)})`);
      const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
      expect(subject?.instance?.overrides).toEqual({});
      const desired = desiredInstance(subject!.subscription, subject!.instance!, {
        now: new Date(),
        gracePeriodMs: 1,
        retentionPeriodMs: 1,
        baseDomain: "mindroom.test",
        masterKey: "test-master-key-0123456789abcdef",
        template: DEFAULT_TEMPLATE,
        imageAllowlist: templateRepositories(DEFAULT_TEMPLATE),
        tls: false,
      });
      for (const app of desired.apps) {
        expect(app.image).toBe(DEFAULT_TEMPLATE[app.component].image);
        expect(app.env).not.toHaveProperty("LD_PRELOAD");
      }
    });

    test("instances.config cannot carry components, even for the operator (they live in instance_overrides)", async () => {
      const c = await createInstance(db.sql);
      expect(await sqlState(db.sql`update instances set config = ${db.sql.json(ATTACK)} where id = ${c.instanceId}`)).toBe(SQLSTATE.checkViolation);
    });

    test("the only column a tenant can write that feeds desired state is instances.desired_state", async () => {
      const writable = await db.sql<{ tbl: string; col: string }[]>`
        select c.relname as tbl, a.attname as col
        from pg_class c join pg_attribute a on a.attrelid = c.oid
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
          and (has_column_privilege('authenticated', c.oid, a.attnum, 'INSERT')
               or has_column_privilege('authenticated', c.oid, a.attnum, 'UPDATE'))
        order by 1, 2`;
      const feeding = writable.filter(({ tbl, col }) => {
        const inputs = DESIRED_STATE_INPUTS[tbl];
        return inputs === "all" || (inputs?.includes(col) ?? false);
      });
      expect(feeding).toEqual([{ tbl: "instances", col: "desired_state" }]);
      const tables = await db.sql<{ tbl: string }[]>`
        select c.relname as tbl from pg_class c
        where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
          and has_table_privilege('anon', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')`;
      expect(tables, "anon writes nothing").toEqual([]);
    });

    test("a tenant can only lower desired_state, never to deprovisioned directly", async () => {
      const c = await createInstance(db.sql);
      expect(await sqlState(asRole(db.sql, "authenticated", c.accountId, (tx) => tx`update instances set desired_state = 'deprovisioned' where id = ${c.instanceId}`))).toBe(
        SQLSTATE.insufficientPrivilege,
      );
    });

    test("operator overrides are checked in SQL, bump the generation and are audited", async () => {
      const c = await createInstance(db.sql);
      const bad = [{ backend: { image: "evil image;rm" } }, { worker: {} }, { backend: { env: { "A;B": "x" } } }, { backend: { env: { OK: 1 } } }, { frontend: { imag: "x" } }];
      for (const components of bad) {
        expect(await sqlState(db.sql`insert into instance_overrides (instance_id, components, reason) values (${c.instanceId}, ${db.sql.json(components)}, 'test')`), JSON.stringify(components)).toBe(
          SQLSTATE.checkViolation,
        );
      }
      const [before] = await db.sql<{ generation: string }[]>`select generation from instances where id = ${c.instanceId}`;
      const good = { backend: { image: "ghcr.io/mindroom-ai/mindroom-backend:v0.5.0", env: { LOG_FORMAT: "json" } } };
      await db.sql`insert into instance_overrides (instance_id, components, reason) values (${c.instanceId}, ${db.sql.json(good)}, 'canary of v0.5.0')`;
      const [after] = await db.sql<{ generation: string }[]>`select generation from instances where id = ${c.instanceId}`;
      expect(Number(after!.generation)).toBe(Number(before!.generation) + 1);
      expect(await countRows(db.sql, "audit_logs", `instance_id = '${c.instanceId}' and action = 'instance_overrides_insert' and details->>'reason' = 'canary of v0.5.0'`)).toBe(1);
      const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
      expect(subject?.instance?.overrides).toEqual(good);
    });
  });

  describe("no existence oracle", () => {
    test("another tenant's id and an id that never existed get the same answer", async () => {
      const me = await createCustomer(db.sql);
      const other = await createInstance(db.sql);
      const missing = crypto.randomUUID();
      const calls: Record<string, (id: string) => string> = {
        check_usage_limits: (id) => `select public.check_usage_limits('${id}')`,
        deprovision_instance: (id) => `select public.deprovision_instance('${id}', 'mine now')`,
        provision_instance: (id) => `select public.provision_instance('${id}', '{}')`,
      };
      for (const [name, call] of Object.entries(calls)) {
        const otherId = name === "provision_instance" ? other.subscriptionId : other.instanceId;
        const answer = async (id: string) => {
          try {
            await asRole(db.sql, "authenticated", me.accountId, (tx) => tx.unsafe(call(id)));
            return "ok";
          } catch (error) {
            const e = error as { code: string; message: string };
            return `${e.code} ${e.message.replace(id, "<id>")}`;
          }
        };
        const forOther = await answer(otherId);
        expect(forOther, name).toMatch(/^P0002 unknown (instance|subscription) <id>$/);
        expect(await answer(missing), name).toBe(forOther);
      }
      expect(await countRows(db.sql, "instances", `id = '${other.instanceId}' and desired_state = 'deprovisioned'`)).toBe(0);
    });
  });

  describe("email is an identity only once confirmed", () => {
    test("sign-up with an unconfirmed email creates no account; the confirmation does", async () => {
      const email = `claim-${crypto.randomUUID()}@example.com`;
      const [user] = await db.sql<{ id: string }[]>`insert into auth.users (email) values (${email}) returning id`;
      expect(await countRows(db.sql, "accounts", `id = '${user!.id}'`)).toBe(0);
      await db.sql`update auth.users set email_confirmed_at = now() where id = ${user!.id}`;
      expect(await countRows(db.sql, "accounts", `id = '${user!.id}' and email = '${email}'`)).toBe(1);
    });

    test("a Stripe customer is not linked to an unconfirmed sign-up's account, and is once it is confirmed", async () => {
      const email = `victim-${crypto.randomUUID()}@example.com`;
      // An account left by an unconfirmed sign-up (as the sign-up trigger made them before 0007).
      const [user] = await db.sql<{ id: string }[]>`insert into auth.users (email) values (${email}) returning id`;
      await db.sql`insert into accounts (id, email) values (${user!.id}, ${email})`;
      const customer = { customerId: `cus_${crypto.randomUUID().slice(0, 8)}`, email, fullName: null, companyName: null, deleted: false };
      const source = { via: "webhook-payload", eventId: null } as const;
      await expect(db.sql.begin((tx) => upsertAccountFromCustomer(tx, customer, source))).rejects.toThrow(/not confirmed/);
      expect(await countRows(db.sql, "accounts", `stripe_customer_id = '${customer.customerId}'`)).toBe(0);
      await db.sql`update auth.users set email_confirmed_at = now() where id = ${user!.id}`;
      const linked = await db.sql.begin((tx) => upsertAccountFromCustomer(tx, customer, source));
      expect(linked).toEqual({ accountId: user!.id, change: "linked" });
    });
  });

  describe("tenant writes are bounded per account", () => {
    test("support tickets: 10 a day, then 429; another account and the operator are not limited", async () => {
      const c = await createCustomer(db.sql);
      const open = () => asRole(db.sql, "authenticated", c.accountId, (tx) => tx`insert into support_tickets (subject, description) values ('s', 'd')`);
      for (let i = 0; i < 10; i++) expect(await sqlState(open()), `ticket ${i + 1}`).toBe("ok");
      expect(await sqlState(open())).toBe(RATE_LIMITED);
      const other = await createCustomer(db.sql);
      expect(await sqlState(asRole(db.sql, "authenticated", other.accountId, (tx) => tx`insert into support_tickets (subject, description) values ('s', 'd')`))).toBe("ok");
      expect(await sqlState(db.sql`insert into support_tickets (account_id, subject, description) values (${c.accountId}, 'from support', 'd')`)).toBe("ok");
    });

    test("API keys: 10 a day through create_api_key, then 429 with a message that says the limit", async () => {
      const c = await createCustomer(db.sql);
      const create = () => asRole(db.sql, "authenticated", c.accountId, (tx) => tx`select * from public.create_api_key(${c.accountId}, 'k')`);
      for (let i = 0; i < 10; i++) expect(await sqlState(create()), `key ${i + 1}`).toBe("ok");
      await expect(create()).rejects.toThrow(/too many API keys created: at most 10 per account per 1 day/);
    });

    test("desired-state changes: 20 an hour, each audited, then 429", async () => {
      const c = await createInstance(db.sql);
      const toggle = (to: string) => asRole(db.sql, "authenticated", c.accountId, (tx) => tx`update instances set desired_state = ${to}::instance_phase where id = ${c.instanceId}`);
      for (let i = 0; i < 20; i++) expect(await sqlState(toggle(i % 2 === 0 ? "stopped" : "running")), `change ${i + 1}`).toBe("ok");
      expect(await sqlState(toggle("stopped"))).toBe(RATE_LIMITED);
      expect(await countRows(db.sql, "audit_logs", `instance_id = '${c.instanceId}' and action = 'instance_desired_state_changed'`)).toBe(20);
      expect(await sqlState(db.sql`update instances set desired_state = 'stopped' where id = ${c.instanceId}`), "the operator is not limited").toBe("ok");
    });
  });
});

describe("migration 0007 on a database that has overrides in instances.config", () => {
  test("moves them into instance_overrides and leaves the product settings", async () => {
    const db = await createEmptyDatabase();
    try {
      await migrateThrough(db.sql, 6);
      // As 0001-0006 knew it: no email_confirmed_at yet, the sign-up trigger creates the account.
      const [user] = await db.sql<{ id: string }[]>`insert into auth.users (email) values ('old@example.com') returning id`;
      const [sub] = await db.sql<{ id: string }[]>`insert into subscriptions (account_id, tier, status) values (${user!.id}, 'free', 'active') returning id`;
      const overrides = { backend: { image: "ghcr.io/mindroom-ai/mindroom-backend:v0.5.0" } };
      const [inst] = await db.sql<{ id: string }[]>`
        insert into instances (subscription_id, subdomain, config)
        values (${sub!.id}, 'old-instance', ${db.sql.json({ components: overrides, agents: ["a"] })}) returning id`;
      const c = { instanceId: inst!.id };
      await migrate(db.sql);
      const [row] = await db.sql<{ config: unknown; components: unknown }[]>`
        select i.config, o.components from instances i join instance_overrides o on o.instance_id = i.id where i.id = ${c.instanceId}`;
      expect(row).toEqual({ config: { agents: ["a"] }, components: overrides });
    } finally {
      await db.drop();
    }
  });
});
