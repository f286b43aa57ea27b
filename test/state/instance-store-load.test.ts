/**
 * `InstanceStore.load` (state/instances.ts), what every reconcile starts with: the subscription,
 * its tier's resources, its live instance with host and overrides, and how many instances it ever
 * had, in one statement. Real Postgres.
 */
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { upsertHost } from "../../src/state/hosts.ts";
import { createInstanceStore } from "../../src/state/instances.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { createCustomer, createInstance } from "../sql/support.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe("InstanceStore.load", () => {
  test("a subscription without an instance: its billing state and tier, no instance, no host", async () => {
    const c = await createCustomer(db.sql, { tier: "professional", status: "trialing" });
    const [tier] = await db.sql<{ memory_mb: number; cpus: string }[]>`select memory_mb, cpus::text as cpus from tiers where name = 'professional'`;
    const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
    expect(subject).toMatchObject({ tier: "professional", instance: null, host: null, instanceCount: 0 });
    expect(subject!.subscription).toMatchObject({ id: c.subscriptionId, accountId: c.accountId, status: "trialing", resources: { memoryMb: tier!.memory_mb, cpus: Number(tier!.cpus) } });
  });

  test("a live instance on a host: the instance's own id, account, status, overrides and the host", async () => {
    const c = await createInstance(db.sql, { tier: "starter", status: "running" });
    const hostId = await upsertHost(db.sql, { name: `load-${c.instanceId.slice(0, 8)}`, sshUrl: "ssh://dokku@host.test:22", hostKey: "ssh-ed25519 AAAA", maxCommandBytes: 4096 });
    await db.sql`update instances set host_id = ${hostId}, health_status = 'healthy' where id = ${c.instanceId}`;
    const overrides = { backend: { env: { LOG_FORMAT: "json" } } };
    await db.sql`insert into instance_overrides (instance_id, components, reason) values (${c.instanceId}, ${db.sql.json(overrides)}, 'test')`;
    const [row] = await db.sql<{ subdomain: string; generation: string }[]>`select subdomain, generation::text as generation from instances where id = ${c.instanceId}`;

    const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
    expect(subject!.subscription.id).toBe(c.subscriptionId);
    expect(subject!.subscription.status).toBe("active");
    expect(subject!.instance).toMatchObject({
      id: c.instanceId,
      accountId: c.accountId,
      subdomain: row!.subdomain,
      status: "running",
      healthStatus: "healthy",
      hostId,
      overrides,
      generation: Number(row!.generation),
    });
    expect(subject!.host).toEqual({ id: hostId, name: `load-${c.instanceId.slice(0, 8)}`, sshUrl: "ssh://dokku@host.test:22", hostKey: "ssh-ed25519 AAAA", maxCommandBytes: 4096 });
    expect(subject!.instanceCount).toBe(1);
  });

  test("an instance without a host: the instance, no host", async () => {
    const c = await createInstance(db.sql);
    const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
    expect(subject!.instance).toMatchObject({ id: c.instanceId, hostId: null, overrides: {} });
    expect(subject!.host).toBeNull();
  });

  test("only a deprovisioned instance: no live instance, but the count says there was one", async () => {
    const c = await createInstance(db.sql, { status: "deprovisioned" });
    const subject = await createInstanceStore(db.sql).load(c.subscriptionId);
    expect(subject).toMatchObject({ instance: null, host: null, instanceCount: 1 });
  });

  test("an unknown subscription or a key that is not a uuid: undefined", async () => {
    const store = createInstanceStore(db.sql);
    expect(await store.load(crypto.randomUUID())).toBeUndefined();
    expect(await store.load("not-a-uuid")).toBeUndefined();
  });

  test("one statement per load, with or without an instance", async () => {
    const statements: string[] = [];
    const counted = postgres(db.url, { max: 1, onnotice: () => {}, debug: (_connection, query) => statements.push(query) });
    try {
      const store = createInstanceStore(counted);
      await counted`select 1`; // the connection's own setup is not the load's
      const without = await createCustomer(db.sql);
      const withInstance = await createInstance(db.sql);
      statements.length = 0;
      await store.load(without.subscriptionId);
      expect(statements).toHaveLength(1);
      statements.length = 0;
      expect((await store.load(withInstance.subscriptionId))?.instance?.id).toBe(withInstance.instanceId);
      expect(statements).toHaveLength(1);
    } finally {
      await counted.end();
    }
  });
});
