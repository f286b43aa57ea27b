/**
 * Crash safety of a restore (issue 8): a `serve` child is killed with SIGKILL right after each
 * action of a restore (safety backup, stop, replace, start), alternately before and after the
 * journal records it, then restarted. The restore must end completed, the storage must equal the
 * backup byte for byte, and no backup row may be `completed` without its object.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { snapshotDir } from "../helpers/files.ts";
import { appsOf } from "./harness.ts";
import { runServeUntil } from "./serve-process.ts";

let db: TestDatabase;
let sandbox: Sandbox;
let dataDir: string;
let env: Record<string, string>;
let instanceId: string;
let subdomain: string;

beforeAll(async () => {
  db = await createTestDatabase();
  const key = generateEd25519KeyPair();
  sandbox = await startSandbox({ authorizedKeys: [key.public] });
  dataDir = mkdtempSync(join(tmpdir(), "mindroom-crash-restore-"));
  env = { DATABASE_URL: db.url, DATA_DIR: dataDir, DOKKU_HOSTS: sandbox.sshUrl, SSH_PRIVATE_KEY: key.private, MASTER_KEY: "crash-restore-master-key-0123456789abcdef0123", LEADER_LEASE_TTL: "1500ms", RESYNC_INTERVAL: "1s" };
  const [account] = await db.sql<{ id: string }[]>`insert into accounts (email) values ('restore@example.com') returning id`;
  const [sub] = await db.sql<{ id: string }[]>`insert into subscriptions (account_id, tier, status) values (${account!.id}, 'starter', 'active') returning id`;
  const [row] = await db.sql<{ id: string }[]>`select provision_instance(${sub!.id}) as id`;
  instanceId = row!.id;
  const [inst] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${instanceId}`;
  subdomain = inst!.subdomain;
}, 60_000);

afterAll(async () => {
  await sandbox?.close();
  await db?.drop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function runOnce(fault: string | undefined, done: () => Promise<boolean>): Promise<"killed" | "done"> {
  return runServeUntil(env, fault, done);
}

describe("crash safety of a restore", () => {
  test("SIGKILL after every step of a restore, then restart: completes, data byte for byte, no completed row without its object", async () => {
    const running = async (): Promise<boolean> => appsOf(subdomain).every((app) => sandbox.control.app(app)?.running === true);
    expect(await runOnce(undefined, running)).toBe("done");
    const dir = sandbox.control.storageDir(`${subdomain}-backend-data`);
    writeFileSync(join(dir, "agents.json"), JSON.stringify({ agents: ["a", "b"], note: "the data to restore" }));
    writeFileSync(join(dir, "blob.bin"), Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 31) % 256)));
    const original = snapshotDir(dir);
    const [request] = await db.sql<{ id: string }[]>`insert into instance_backups (instance_id, component) values (${instanceId}, 'backend') returning id`;
    const backedUp = async (): Promise<boolean> => {
      const [row] = await db.sql<{ status: string }[]>`select status::text as status from instance_backups where id = ${request!.id}`;
      return row?.status === "completed";
    };
    expect(await runOnce(undefined, backedUp)).toBe("done");

    rmSync(join(dir, "blob.bin"));
    writeFileSync(join(dir, "agents.json"), "changed after the backup");
    const [restore] = await db.sql<{ id: string }[]>`insert into instance_restores (backup_id, instance_id) values (${request!.id}, ${instanceId}) returning id`;
    const restored = async (): Promise<boolean> => {
      const [row] = await db.sql<{ status: string }[]>`select status::text as status from instance_restores where id = ${restore!.id}`;
      return row?.status === "completed" && (await running());
    };
    let runs = 0;
    for (let outcome = ""; outcome !== "done"; runs++) {
      outcome = await runOnce(`1:${runs % 2 === 0 ? "executed" : "journaled"}`, restored);
      expect(runs).toBeLessThan(20);
    }
    expect(runs, "the restore was interrupted at several steps").toBeGreaterThan(3);
    expect(snapshotDir(dir)).toEqual(original);
    const completed = await db.sql<{ location: string }[]>`select location from instance_backups where instance_id = ${instanceId} and status = 'completed'`;
    for (const row of completed) expect(existsSync(join(dataDir, "backups", row.location.replace(/^local:/, ""))), row.location).toBe(true);
    const [pending] = await db.sql<{ n: number }[]>`select count(*)::int as n from instance_operations where instance_id = ${instanceId} and status = 'pending'`;
    expect(pending?.n).toBe(0);
  }, 400_000);
});
