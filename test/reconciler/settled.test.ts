/**
 * Settled passes (issue 12): a resync pass over an instance nothing has changed is answered from
 * the wave's one bulk read and the host's shared view, with no SQL or SSH of its own and no status
 * write; anything that changed since the last full pass (a new generation, the host, an open
 * journal entry, another epoch, a deep observe due) sends the key to a full pass. Real Postgres
 * (the seed's four instances), a sandbox host over real SSH, the reconciler the daemon builds.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Sql } from "postgres";
import { Registry } from "prom-client";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { loadConfig } from "../../src/config.ts";
import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createDokkuDriver, type DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { Observer } from "../../src/reconciler/observe.ts";
import type { Reconciler } from "../../src/reconciler/reconcile.ts";
import { buildReconciler } from "../../src/runtime/controller.ts";
import { seed } from "../../src/state/db.ts";
import { upsertHost } from "../../src/state/hosts.ts";
import { createInstanceStore } from "../../src/state/instances.ts";
import { leaseStore, RECONCILER_LEASE } from "../../src/state/lease.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const HOUR = 60 * 60_000;
let db: TestDatabase;
let sandbox: Sandbox;
let driver: DokkuDriver;
let backupDir: string;
let observer: Observer;
let reconciler: Reconciler;
let keys: string[];
let leaseEpoch = 0;
let epoch = 0;
let offset = 0;
/** Statements the reconciler sent through its pool (tagged templates and transactions). */
let statements = 0;

const now = (): Date => new Date(Date.now() + offset);

beforeAll(async () => {
  db = await createTestDatabase({ max: 10 });
  await seed(db.sql);
  const key = generateEd25519KeyPair();
  sandbox = await startSandbox({ dokkuVersion: "0.38", authorizedKeys: [key.public] });
  await upsertHost(db.sql, { name: "sandbox", sshUrl: sandbox.sshUrl, ingressUrl: sandbox.ingressUrl, hostKey: sandbox.hostKey, capacity: 100, maxCommandBytes: sandbox.maxCommandBytes });
  driver = createDokkuDriver({ privateKey: key.private, registry: new Registry(), commandTimeoutMs: 15_000 });
  backupDir = await mkdtemp(join(tmpdir(), "mindroom-settled-"));
  observer = new Observer({ driver, hostTtlMs: HOUR, deepIntervalMs: HOUR, now: () => now().getTime() });
  leaseEpoch = (await leaseStore(db.sql).acquireOrRenew({ name: RECONCILER_LEASE, holder: "settled-test", ttlMs: HOUR })).epoch;
  const sql = counting(db.sql);
  const masterKey = "test-master-key-0123456789abcdef0123456789";
  reconciler = buildReconciler({ sql, config: loadConfig({}), driver, observer, masterKey, backupStore: createLocalStore(backupDir), now, epoch: () => epoch });
  keys = await createInstanceStore(db.sql).listKeys();
  expect(keys).toHaveLength(4);
}, 60_000);

afterAll(async () => {
  await driver?.close();
  await sandbox?.close();
  await db?.drop();
  if (backupDir) await rm(backupDir, { recursive: true, force: true });
});

beforeEach(async () => {
  epoch = leaseEpoch;
  await converge();
});

/** The pool, counting what goes through it. */
function counting(sql: Sql): Sql {
  return new Proxy(sql, {
    apply: (target, self, args: unknown[]) => {
      statements += 1;
      return Reflect.apply(target as unknown as (...a: unknown[]) => unknown, self, args);
    },
    get: (target, property, receiver) => {
      if (property === "begin") statements += 1;
      return Reflect.get(target, property, receiver) as unknown;
    },
  });
}

/**
 * Full passes of every key until each is running or stopped on its generation, then one more (as
 * the notification of a pass's own placement brings in the daemon): the apps a pass changed are
 * re-read once, as the steady state has them.
 */
async function converge(): Promise<void> {
  const passes = async (): Promise<void> => {
    observer.beginWave();
    for (const key of keys) await reconciler.reconcile(key, AbortSignal.timeout(60_000));
  };
  for (let round = 0; round < 5; round++) {
    await passes();
    const [row] = await db.sql<{ pending: number }[]>`
      select count(*)::int as pending from public.instances
      where not (status in ('running', 'stopped') and observed_generation = generation)`;
    if (row?.pending === 0) return passes();
  }
  throw new Error("the seed did not converge in 5 rounds of passes");
}

/** A resync wave of settled checks: what each key got, and the SQL and SSH it cost. */
async function wave(): Promise<{ results: Array<{ requeueAfterMs?: number } | undefined>; statements: number; ssh: string[] }> {
  observer.beginWave();
  reconciler.beginWave();
  sandbox.control.resetCounters();
  const before = statements;
  const results = [];
  for (const key of keys) results.push(await reconciler.settled(key, AbortSignal.timeout(30_000)));
  const ssh = sandbox.control.commands.map((record) => record.argv.join(" ")).filter((line) => line !== "version");
  return { results, statements: statements - before, ssh };
}

async function instanceOf(subdomain: string): Promise<{ id: string; subscriptionId: string; updatedAt: Date }> {
  const [row] = await db.sql<{ id: string; subscription_id: string; updated_at: Date }[]>`
    select id, subscription_id, updated_at from public.instances where subdomain = ${subdomain}`;
  if (!row) throw new Error(`no instance ${subdomain}`);
  return { id: row.id, subscriptionId: row.subscription_id, updatedAt: row.updated_at };
}

describe("settled passes", () => {
  test("a resync over settled instances costs one statement and one bulk ps:report in all, and writes nothing", async () => {
    const before = await instanceOf("demo-pro");
    const { results, statements: sent, ssh } = await wave();
    expect(results).toEqual(keys.map(() => ({})));
    expect(sent).toBe(1);
    expect(ssh).toEqual(["ps:report"]);
    expect((await instanceOf("demo-pro")).updatedAt).toEqual(before.updatedAt);
  });

  test("a new generation sends the key to a full pass; once converged again it is settled", async () => {
    const pro = await instanceOf("demo-pro");
    await db.sql`update public.instances set desired_state = 'stopped' where id = ${pro.id}`;
    const index = keys.indexOf(pro.subscriptionId);
    expect((await wave()).results[index]).toBeUndefined();
    await converge();
    expect((await wave()).results[index]).toEqual({});
    await db.sql`update public.instances set desired_state = 'running' where id = ${pro.id}`;
    await converge();
  });

  test("an app stopped by hand, an open journal entry, another epoch or a deep observe due: a full pass", async () => {
    const starter = await instanceOf("demo-starter");
    const index = keys.indexOf(starter.subscriptionId);
    await sandbox.control.stopAppByHand("demo-starter-backend");
    expect((await wave()).results[index]).toBeUndefined();
    await converge();
    expect((await wave()).results[index]).toEqual({});

    await db.sql`
      insert into public.instance_operations (instance_id, action, target, params_hash, status, epoch)
      values (${starter.id}, 'restart', 'demo-starter-backend', 'x', 'pending', ${leaseEpoch})`;
    expect((await wave()).results[index]).toBeUndefined();
    await converge(); // the pass resolves the entry
    expect((await wave()).results[index]).toEqual({});

    epoch = leaseEpoch + 1;
    expect((await wave()).results[index]).toBeUndefined();
    epoch = leaseEpoch;
    offset += 2 * HOUR;
    expect((await wave()).results).toEqual(keys.map(() => undefined));
  });
});
