/**
 * Crash safety: a `serve` child is killed with SIGKILL right after each external action of a
 * provision and of a teardown (alternately before and after the journal records it), then
 * restarted. Every restart must converge further, with no duplicate instance, no app outside the
 * instance's deterministic names, and nothing destroyed before a completed final backup.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buffer } from "node:stream/consumers";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { openArchive } from "../../src/runtime/backups.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { appsOf } from "./harness.ts";
import { runServeUntil } from "./serve-process.ts";

let db: TestDatabase;
let sandbox: Sandbox;
let dataDir: string;
let env: Record<string, string>;
let subdomain: string;
let instanceId: string;
let subscriptionId: string;

beforeAll(async () => {
  db = await createTestDatabase();
  const key = generateEd25519KeyPair();
  sandbox = await startSandbox({ authorizedKeys: [key.public] });
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-crash-"));
  env = { DATABASE_URL: db.url, DATA_DIR: dataDir, DOKKU_HOSTS: sandbox.sshUrl, SSH_PRIVATE_KEY: key.private, MASTER_KEY: "crash-test-master-key-0123456789abcdef012345", LEADER_LEASE_TTL: "1500ms", RESYNC_INTERVAL: "1s" };
  const [account] = await db.sql<{ id: string }[]>`insert into accounts (email) values ('crash@example.com') returning id`;
  const [sub] = await db.sql<{ id: string }[]>`insert into subscriptions (account_id, tier, status) values (${account!.id}, 'starter', 'active') returning id`;
  subscriptionId = sub!.id;
  const [row] = await db.sql<{ id: string }[]>`select provision_instance(${subscriptionId}) as id`;
  instanceId = row!.id;
  const [inst] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${instanceId}`;
  subdomain = inst!.subdomain;
}, 60_000);

afterAll(async () => {
  await sandbox?.close();
  await db?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

/** Runs serve once with the kill hook; resolves "killed", or "done" when it converged first. */
function runOnce(point: "executed" | "journaled", converged: () => Promise<boolean>): Promise<"killed" | "done"> {
  return runServeUntil(env, `1:${point}`, converged);
}

async function instanceRow(): Promise<{ status: string; generation: string; observed: string }> {
  const [row] = await db.sql<{ status: string; generation: string; observed: string }[]>`
    select status::text as status, generation::text as generation, observed_generation::text as observed from instances where id = ${instanceId}`;
  return row!;
}

async function checkNoDuplicates(): Promise<void> {
  const [live] = await db.sql<{ count: number }[]>`select count(*)::int as count from instances where subscription_id = ${subscriptionId} and status <> 'deprovisioned'`;
  expect(live!.count).toBeLessThanOrEqual(1);
  const ours = sandbox.control.apps().filter((app) => app.startsWith(`${subdomain}-`));
  expect(ours.every((app) => appsOf(subdomain).includes(app)), `unexpected apps: ${ours.join(", ")}`).toBe(true);
}

/** Journal rows by status, and how many an observing pass resolved from `unknown`. */
async function journal(): Promise<{ unresolved: number; resolved: number }> {
  const [row] = await db.sql<{ unresolved: number; resolved: number }[]>`
    select count(*) filter (where status in ('pending', 'unknown'))::int as unresolved,
           count(*) filter (where error like '%resolved: %')::int as resolved
    from instance_operations where instance_id = ${instanceId}`;
  return row!;
}

/** `status` as an operator runs it: the instance's row, and whether it reports unknown outcomes. */
async function statusOutput(): Promise<string> {
  const result = spawnSync(process.execPath, ["src/bin.mjs", "status"], { env: { PATH: process.env.PATH, ...env }, encoding: "utf8", timeout: 60_000 });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

async function completedBackups(): Promise<{ component: string; location: string; sha256: string; size_bytes: string }[]> {
  return db.sql`select component, location, sha256, size_bytes::text as size_bytes from instance_backups
                where instance_id = ${instanceId} and backup_type = 'pre_deprovision' and status = 'completed'`;
}

describe("crash safety", () => {
  test("SIGKILL after every step of a provision and of a teardown, then restart: converges, leaks nothing", async () => {
    let runs = 0;
    const converged = async (): Promise<boolean> => {
      const row = await instanceRow();
      return row.status === "running" && row.generation === row.observed && appsOf(subdomain).every((app) => sandbox.control.app(app)?.running === true);
    };
    for (let outcome: string = ""; outcome !== "done"; runs++) {
      outcome = await runOnce(runs % 2 === 0 ? "executed" : "journaled", converged);
      await checkNoDuplicates();
      expect(runs).toBeLessThan(40);
    }
    expect(runs).toBeGreaterThan(10);
    // Every kill after "executed" left a pending row; the pass that observed after each crash
    // settled it, so none stays unknown and `status` reports none (issue 19).
    const afterProvision = await journal();
    expect(afterProvision.unresolved).toBe(0);
    expect(afterProvision.resolved).toBeGreaterThanOrEqual(Math.floor(runs / 2) - 1);
    expect(await statusOutput()).not.toMatch(/unknown outcome/);

    // Data worth keeping in the storage the teardown must back up.
    await writeFile(join(sandbox.control.storageDir(`${subdomain}-backend-data`), "agents.json"), JSON.stringify({ agents: ["a", "b"] }));
    await db.sql`select deprovision_instance(${instanceId}, 'crash-safety test')`;
    const tornDown = async (): Promise<boolean> => (await instanceRow()).status === "deprovisioned";
    let teardownRuns = 0;
    for (let outcome: string = ""; outcome !== "done"; teardownRuns++) {
      outcome = await runOnce(teardownRuns % 2 === 0 ? "executed" : "journaled", tornDown);
      await checkNoDuplicates();
      const destroyedSomething = appsOf(subdomain).some((app) => sandbox.control.app(app) === undefined);
      if (destroyedSomething) expect((await completedBackups()).map((b) => b.component).sort()).toEqual(["backend", "matrix"]);
      expect(teardownRuns).toBeLessThan(30);
    }
    expect(teardownRuns).toBeGreaterThan(3);
    const afterTeardown = await journal();
    expect(afterTeardown.unresolved).toBe(0);
    expect(afterTeardown.resolved).toBeGreaterThan(afterProvision.resolved);
    expect(appsOf(subdomain).filter((app) => sandbox.control.app(app) !== undefined)).toEqual([]);
    for (const backup of await completedBackups()) {
      const bytes = await readFile(join(dataDir, "backups", backup.location.replace(/^local:/, "")));
      expect(createHash("sha256").update(bytes).digest("hex")).toBe(backup.sha256);
      expect(bytes.length).toBe(Number(backup.size_bytes));
      const [row] = await db.sql<{ id: string }[]>`select id from instance_backups where location = ${backup.location}`;
      const plain = await buffer(await openArchive({ sql: db.sql, store: createLocalStore(dataDir), masterKey: env.MASTER_KEY! }, row!.id));
      expect(plain.subarray(0, 2), "decrypted and verified: a tar.gz").toEqual(Buffer.from([0x1f, 0x8b]));
    }
  }, 400_000);
});
