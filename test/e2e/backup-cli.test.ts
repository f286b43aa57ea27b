/**
 * The backup commands through the real CLI (issue 8), with no daemon leading, so each command runs
 * the pass itself: `backup --json`, `backups list --json`, `backups download` (byte-identical
 * tar.gz; a corrupted object leaves no file and exits 1), `backups verify`, `restore`.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { runCli } from "../helpers/cli.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

let h: Harness;
let env: Record<string, string>;
let dataDir: string;

beforeAll(async () => {
  h = await startHarness();
  await eventually("demo-pro converges", () => appsOf("demo-pro").every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
  await h.stopController();
  dataDir = mkdtempSync(join(tmpdir(), "mindroom-backup-cli-"));
  env = { PATH: process.env.PATH ?? "", DATABASE_URL: h.db.url, DATA_DIR: dataDir, DOKKU_HOSTS: h.sandbox.sshUrl, SSH_PRIVATE_KEY: h.sshPrivateKey, MASTER_KEY: h.masterKey, LOG_LEVEL: "warn" };
}, 150_000);

afterAll(async () => {
  await h?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Runs the CLI without blocking this process, whose event loop serves the sandbox host. */
function cli(...args: string[]) {
  return runCli(env, args, 120_000);
}

describe("backup commands", () => {
  test("backup --json, list, download, verify, restore; a corrupted object is refused", async () => {
    writeFileSync(join(h.sandbox.control.storageDir("demo-pro-backend-data"), "state.json"), JSON.stringify({ marker: "backed up by the CLI" }));
    const taken = await cli("backup", "demo-pro", "--component", "backend", "--json");
    expect(taken.status, taken.stderr).toBe(0);
    const { backups } = JSON.parse(taken.stdout) as { backups: { id: string; component: string; sizeBytes: number; sha256: string; location: string; status: string }[] };
    expect(backups).toHaveLength(1);
    expect(backups[0]).toMatchObject({ component: "backend", status: "completed" });
    expect(backups[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    const id = backups[0]!.id;

    const listed = await cli("backups", "list", "demo-pro", "--json");
    expect((JSON.parse(listed.stdout) as { backups: { id: string }[] }).backups.map((b) => b.id)).toContain(id);

    const out = join(dataDir, "download.tar.gz");
    const downloaded = await cli("backups", "download", id, "--out", out);
    expect(downloaded.status, downloaded.stderr).toBe(0);
    expect(gunzipSync(readFileSync(out)).includes(Buffer.from("backed up by the CLI"))).toBe(true);

    expect((await cli("backups", "verify", id)).status).toBe(0);

    writeFileSync(join(h.sandbox.control.storageDir("demo-pro-backend-data"), "state.json"), "overwritten");
    const restored = await cli("restore", id, "--json");
    expect(restored.status, restored.stdout + restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ status: "completed", backupId: id });
    expect(readFileSync(join(h.sandbox.control.storageDir("demo-pro-backend-data"), "state.json"), "utf8")).toContain("backed up by the CLI");

    // One flipped byte in the stored object: download and verify refuse it, and no file is left.
    const object = join(dataDir, "backups", backups[0]!.location.replace(/^local:/, ""));
    const bytes = readFileSync(object);
    bytes[bytes.length - 100] = (bytes[bytes.length - 100] ?? 0) ^ 0xff;
    writeFileSync(object, bytes);
    const corrupt = join(dataDir, "corrupt.tar.gz");
    const refused = await cli("backups", "download", id, "--out", corrupt);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/download failed, nothing written/);
    expect(existsSync(corrupt) || existsSync(`${corrupt}.partial`)).toBe(false);
    expect((await cli("backups", "verify", id)).status).toBe(1);
  }, 240_000);
});
