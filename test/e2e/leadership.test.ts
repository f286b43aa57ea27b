import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { seed } from "../../src/state/db.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { appsOf, eventually, SEED_SUBDOMAINS } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

let db: TestDatabase;
let sandbox: Sandbox;
let env: Record<string, string>;
const processes: ServeProcess[] = [];
const dirs: string[] = [];

async function replicaDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mindroom-replica-"));
  dirs.push(dir);
  return dir;
}

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
  const key = generateEd25519KeyPair();
  sandbox = await startSandbox({ authorizedKeys: [key.public] });
  env = { DATABASE_URL: db.url, DOKKU_HOSTS: sandbox.sshUrl, SSH_PRIVATE_KEY: key.private, MASTER_KEY: "leadership-test-master-key-0123456789abcdef", RESYNC_INTERVAL: "2s" };
}, 60_000);

afterAll(async () => {
  for (const p of processes) p.kill("SIGKILL");
  await Promise.all(processes.map((p) => p.exited));
  await sandbox?.close();
  await db?.drop();
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("leadership across two serve processes on one database", () => {
  test("exactly one reconciles; after SIGKILL of the leader the other takes over in under 20 s", async () => {
    // Replicas share the database, each with its own DATA_DIR (one serve per DATA_DIR).
    const first = startServe({ ...env, DATA_DIR: await replicaDir() });
    processes.push(first);
    await first.port;
    await eventually("the first process leads", async () => (await first.leading()) === true, 30_000);
    const second = startServe({ ...env, DATA_DIR: await replicaDir() });
    processes.push(second);
    await second.port;
    await eventually("the second process serves metrics", async () => (await second.leading()) !== undefined, 30_000);
    await eventually("the seed converges", () => SEED_SUBDOMAINS.flatMap(appsOf).every((app) => sandbox.control.app(app)?.running === true), 60_000);
    for (let check = 0; check < 5; check++) {
      expect([await first.leading(), await second.leading()]).toEqual([true, false]);
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const [before] = await db.sql<{ epoch: string }[]>`select epoch::text as epoch from controller_leases where name = 'reconciler'`;

    first.kill("SIGKILL");
    const killedAt = Date.now();
    await first.exited;
    await eventually("the second process leads", async () => (await second.leading()) === true, 25_000);
    const failoverMs = Date.now() - killedAt;
    expect(failoverMs).toBeLessThan(20_000);

    const [after] = await db.sql<{ epoch: string }[]>`select epoch::text as epoch from controller_leases where name = 'reconciler'`;
    expect(Number(after!.epoch)).toBe(Number(before!.epoch) + 1);
    await db.sql`update instances set desired_state = 'stopped' where subdomain = 'demo-pro'`;
    await eventually("the new leader acts", () => appsOf("demo-pro").every((app) => sandbox.control.app(app)?.running === false), 20_000);
    const epochs = await db.sql<{ epoch: string }[]>`select distinct epoch::text as epoch from instance_operations where action = 'stop'`;
    expect(epochs.map((row) => Number(row.epoch))).toEqual([Number(after!.epoch)]);
  }, 150_000);
});
