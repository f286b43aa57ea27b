/**
 * Backups and restore through the controller (issue 8): known files in an instance's storage on
 * the sandbox are backed up (encrypted into the store), wiped, restored and compared byte for
 * byte; the daily schedule and the expiry on an injected clock; the manual per-day limit; and a
 * signed download link over real HTTP.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createHttpServer } from "../../src/http.ts";
import { expireBackups, scheduleDailyBackups } from "../../src/runtime/backup-jobs.ts";
import { DOWNLOAD_PREFIX, downloadHandler, signDownloadPath } from "../../src/runtime/backup-links.ts";
import { requestBackup } from "../../src/state/backups.ts";
import { requestRestore } from "../../src/state/restores.ts";
import { snapshotDir } from "../helpers/files.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness({ env: { BACKUP_MANUAL_PER_DAY: "3" } });
  await eventually("demo-pro running", () => appsOf("demo-pro").every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
}, 150_000);

afterAll(async () => {
  await h?.stop();
});

const PLAINTEXT_MARKER = "this line must never appear in a stored object";

function fill(dir: string): void {
  mkdirSync(join(dir, "db", "nested"), { recursive: true });
  writeFileSync(join(dir, "db", "state.json"), JSON.stringify({ marker: PLAINTEXT_MARKER, n: 42 }));
  writeFileSync(join(dir, "db", "nested", "blob.bin"), Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 256)));
  writeFileSync(join(dir, "notes.txt"), `${PLAINTEXT_MARKER}\n`.repeat(100));
}

function wipe(dir: string): void {
  for (const name of readdirSync(dir)) rmSync(join(dir, name), { recursive: true, force: true });
}

async function instanceId(subdomain: string): Promise<string> {
  const [row] = await h.db.sql<{ id: string }[]>`select id from instances where subdomain = ${subdomain}`;
  return row!.id;
}

async function rowsOf(requestId: string) {
  return h.db.sql<{ id: string; component: string; status: string; location: string | null; error: string | null; key_id: string | null }[]>`
    select id, component, status::text as status, location, error, key_id from instance_backups where id = ${requestId} or request_id = ${requestId} order by component`;
}

async function finished(requestId: string): Promise<Awaited<ReturnType<typeof rowsOf>>> {
  let rows: Awaited<ReturnType<typeof rowsOf>> | undefined;
  await eventually(`backup request ${requestId} finished`, async () => {
    rows = await rowsOf(requestId);
    return rows.length > 0 && rows.every((row) => row.status === "completed" || row.status === "failed");
  }, 60_000);
  return rows!;
}

describe("a manual backup and a restore of the same data", () => {
  test("backs up every component with storage, encrypted; wipe; restore; byte for byte the same", async () => {
    const inst = await instanceId("demo-pro");
    const backendDir = h.sandbox.control.storageDir("demo-pro-backend-data");
    const matrixDir = h.sandbox.control.storageDir("demo-pro-matrix-data");
    fill(backendDir);
    fill(matrixDir);
    const original = snapshotDir(backendDir);

    const rows = await finished(await requestBackup(h.db.sql, inst, null));
    expect(rows.map((r) => [r.component, r.status])).toEqual([["backend", "completed"], ["matrix", "completed"]]);
    for (const row of rows) {
      expect(row.key_id).toMatch(/^[0-9a-f]{16}$/);
      const stored = readFileSync(join(h.backupDir, "backups", row.location!.replace(/^local:/, "")));
      expect(stored.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b])), "the stored object is not gzip").toBe(false);
      expect(stored.includes(Buffer.from(PLAINTEXT_MARKER)), "no plaintext in the stored object").toBe(false);
    }

    wipe(backendDir);
    writeFileSync(join(backendDir, "after-the-backup.txt"), "written after the backup");
    const backend = rows.find((r) => r.component === "backend")!;
    const restoreId = await requestRestore(h.db.sql, backend.id, inst, "test");
    await eventually("restore finished", async () => {
      const [r] = await h.db.sql<{ status: string }[]>`select status::text as status from instance_restores where id = ${restoreId}`;
      return r?.status === "completed" || r?.status === "failed";
    }, 60_000);
    const [restore] = await h.db.sql<{ status: string; error: string | null; safety_backup_id: string }[]>`select status::text as status, error, safety_backup_id from instance_restores where id = ${restoreId}`;
    expect(restore).toMatchObject({ status: "completed", error: null });
    expect(snapshotDir(backendDir), "the storage equals the backup byte for byte").toEqual(original);
    await eventually("backend running again", () => h.sandbox.control.app("demo-pro-backend")?.running === true);

    const [safety] = await h.db.sql<{ status: string; backup_type: string }[]>`select status::text as status, backup_type::text as backup_type from instance_backups where id = ${restore!.safety_backup_id}`;
    expect(safety, "the data replaced was backed up first").toEqual({ status: "completed", backup_type: "pre_restore" });
    const [audit] = await h.db.sql<{ n: number }[]>`select count(*)::int as n from audit_logs where instance_id = ${inst} and action = 'instance_restored'`;
    expect(audit?.n).toBe(1);
    const [conditions] = await h.db.sql<{ conditions: { type: string; status: string }[] }[]>`select conditions from instances where id = ${inst}`;
    expect(conditions!.conditions.find((c) => c.type === "Restored")?.status).toBe("True");
  });

  test("a signed link streams the decrypted archive over HTTP; an altered or expired link gets 403", async () => {
    const inst = await instanceId("demo-pro");
    const [row] = await finished(await requestBackup(h.db.sql, inst, "backend"));
    const store = createLocalStore(h.backupDir);
    const server: Server = createHttpServer({ [`GET ${DOWNLOAD_PREFIX}*`]: downloadHandler({ sql: h.db.sql, store, masterKey: h.masterKey, now: () => new Date(), logger: console }) }, () => {});
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const { path } = signDownloadPath(h.masterKey, row!.id, new Date(), 60_000);
      const ok = await fetch(`${base}${path}`);
      expect(ok.status).toBe(200);
      const body = Buffer.from(await ok.arrayBuffer());
      expect(body.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b])), "the download is the plain tar.gz").toBe(true);
      const altered = path.slice(0, -1) + (path.endsWith("0") ? "1" : "0");
      expect((await fetch(`${base}${altered}`)).status).toBe(403);
      expect((await fetch(`${base}${path.replace(row!.id, crypto.randomUUID())}`)).status, "the signature covers the id").toBe(403);
      const expired = signDownloadPath(h.masterKey, row!.id, new Date(Date.now() - 120_000), 60_000);
      expect((await fetch(`${base}${expired.path}`)).status).toBe(403);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test("manual backups beyond the per-day limit fail with the reason", async () => {
    const inst = await instanceId("demo-starter");
    await eventually("demo-starter running", () => appsOf("demo-starter").every((app) => h.sandbox.control.app(app)?.running === true), 60_000);
    const outcomes: string[] = [];
    for (let i = 0; i < 4; i++) outcomes.push((await finished(await requestBackup(h.db.sql, inst, "backend")))[0]!.status);
    expect(outcomes).toEqual(["completed", "completed", "completed", "failed"]);
    const [last] = await h.db.sql<{ error: string }[]>`select error from instance_backups where instance_id = ${inst} and status = 'failed' order by created_at desc limit 1`;
    expect(last?.error).toBe("manual backup limit reached: at most 3 per instance per day");
  });
});

describe("schedule and retention on an injected clock", () => {
  test("paid instances get one automatic backup per daily slot; the free tier none", async () => {
    const wiring = { sql: h.db.sql, store: createLocalStore(h.backupDir), masterKey: h.masterKey, dailyAtMinute: 180, retentionMs: 30 * 86_400_000, logger: console };
    const now = new Date(Date.now() + 86_400_000); // tomorrow: every slot of today has passed
    const first = await scheduleDailyBackups(wiring, now);
    expect(await scheduleDailyBackups(wiring, now), "a second check in the same slot requests nothing").toBe(0);
    const rows = await h.db.sql<{ subdomain: string }[]>`
      select i.subdomain from instance_backups b join instances i on i.id = b.instance_id where b.backup_type = 'automatic' and b.request_id is null order by 1`;
    expect(rows.map((r) => r.subdomain)).toEqual(["demo-enterprise", "demo-pro", "demo-starter"]);
    expect(first).toBe(3);
  });

  test("expiry deletes the object first, then marks the row expired", async () => {
    const inst = await instanceId("demo-enterprise");
    await eventually("demo-enterprise running", () => appsOf("demo-enterprise").every((app) => h.sandbox.control.app(app)?.running === true), 60_000);
    const [row] = await finished(await requestBackup(h.db.sql, inst, "backend"));
    const file = join(h.backupDir, "backups", row!.location!.replace(/^local:/, ""));
    expect(statSync(file).isFile()).toBe(true);
    const store = createLocalStore(h.backupDir);
    expect(await expireBackups({ sql: h.db.sql, store }, new Date()), "nothing has expired yet").toBe(0);
    expect(await expireBackups({ sql: h.db.sql, store }, new Date(Date.now() + 31 * 86_400_000))).toBeGreaterThanOrEqual(1);
    const [after] = await h.db.sql<{ status: string }[]>`select status::text as status from instance_backups where id = ${row!.id}`;
    expect(after?.status).toBe("expired");
    expect(() => statSync(file)).toThrow(/ENOENT/);
  });
});
