/**
 * The `/v1` API driving a real controller against the sandbox Dokku host over SSH: stop and start
 * reach the host within seconds through desired state, restart restarts every component once, and
 * a manual backup requested through the API completes and downloads byte-identical to the CLI's
 * `backups download`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { closeServer, createHttpServer, listen } from "../../src/http.ts";
import { openArchive } from "../../src/runtime/backups.ts";
import { type Api, createApi } from "../../src/sources/api/server.ts";
import { createApiKey } from "../../src/state/api-keys.ts";
import { sendReconcileRequest } from "../../src/state/reconcile-requests.ts";
import { type ResponseChecker, responseChecker } from "../api/openapi.ts";
import { runCli } from "../helpers/cli.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

const STARTER = "a0000000-0000-4000-8000-000000000002";

let h: Harness;
let api: Api;
let server: Server;
let base: string;
let key: string;
let dataDir: string;
let checker: Promise<ResponseChecker>;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), "mindroom-api-e2e-"));
  const store = createLocalStore(dataDir);
  h = await startHarness({ backupStore: store });
  await eventually("demo-starter runs", () => appsOf("demo-starter").every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
  api = await createApi({
    sql: h.db.sql,
    logger: pino({ level: "silent" }),
    registry: new Registry(),
    requestTimeoutMs: 5_000,
    gracePeriodMs: 7 * 86_400_000,
    retentionPeriodMs: 30 * 86_400_000,
    manualBackupsPerDay: 5,
    openArchive: (backupId, signal) => openArchive({ sql: h.db.sql, store, masterKey: h.masterKey }, backupId, signal),
    requestReconcile: (subscriptionId) => sendReconcileRequest(h.db.sql, { key: subscriptionId, request: "e2e", deep: true }),
  });
  server = createHttpServer({ "GET /v1/*": api.handler, "POST /v1/*": api.handler }, (error) => console.error(error));
  base = `http://127.0.0.1:${(await listen(server, 0, "127.0.0.1")).port}`;
  checker = responseChecker(api.document());
  key = (await createApiKey(h.db.sql, STARTER, "e2e", ["instances:read", "instances:write", "backups:read", "backups:write"], null)).key;
}, 150_000);

afterAll(async () => {
  if (server) await closeServer(server);
  await api?.close();
  await h?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

/** One request; a JSON answer is checked against /v1/openapi.json. */
async function v1(method: string, path: string): Promise<{ status: number; body: Record<string, unknown>; bytes: Buffer }> {
  const response = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${key}` }, signal: AbortSignal.timeout(30_000) });
  const bytes = Buffer.from(await response.arrayBuffer());
  const isJson = response.headers.get("content-type")?.includes("json") === true;
  const json = isJson ? (JSON.parse(bytes.toString("utf8")) as Record<string, unknown>) : {};
  if (isJson) (await checker).checkPath(method, path, response.status, json);
  return { status: response.status, body: json, bytes };
}

const running = (on: boolean) => () => appsOf("demo-starter").every((app) => h.sandbox.control.app(app)?.running === on);

describe("the API drives the controller", () => {
  test("stop stops the apps on the host within seconds, start brings them back", async () => {
    const stopped = await v1("POST", "/v1/instances/demo-starter/stop");
    expect(stopped.status).toBe(202);
    expect((stopped.body.desired as { phase: string }).phase).toBe("stopped");
    await eventually("demo-starter stopped on the host", running(false), 15_000);
    await eventually("the API reports it stopped", async () => (await v1("GET", "/v1/instances/demo-starter")).body.phase === "stopped", 15_000);
    const started = await v1("POST", "/v1/instances/demo-starter/start");
    expect(started.status).toBe(202);
    await eventually("demo-starter running again", running(true), 15_000);
  }, 60_000);

  test("restart restarts every component once and clears the request", async () => {
    await eventually("the API reports it running", async () => (await v1("GET", "/v1/instances/demo-starter")).body.phase === "running", 15_000);
    h.sandbox.control.resetCounters();
    const restarted = await v1("POST", "/v1/instances/demo-starter/restart");
    expect(restarted.status).toBe(202);
    expect(restarted.body.restart_requested_at).not.toBeNull();
    await eventually("the restart request is answered", async () => (await v1("GET", "/v1/instances/demo-starter")).body.restart_requested_at === null, 15_000);
    const restarts = h.sandbox.control.commands.filter((c) => c.argv[0] === "ps:restart").map((c) => c.argv[1]);
    expect(restarts.sort()).toEqual(appsOf("demo-starter").sort());
    const [audit] = await h.db.sql<{ count: number }[]>`select count(*)::int as count from public.audit_logs where action = 'instance_restarted'`;
    expect(audit!.count).toBe(1);
    expect(running(true)()).toBe(true);
  }, 60_000);

  test("a manual backup through the API completes and downloads byte-identical to the CLI's download", async () => {
    const requested = await v1("POST", "/v1/instances/demo-starter/backups");
    expect(requested.status).toBe(202);
    const id = requested.body.id as string;
    await eventually("the backup completes", async () => (await v1("GET", `/v1/backups/${id}`)).body.status === "completed", 60_000);
    const downloaded = await v1("GET", `/v1/backups/${id}/download`);
    expect(downloaded.status).toBe(200);
    expect(downloaded.bytes.length).toBeGreaterThan(0);
    const out = join(dataDir, "cli.tar.gz");
    const env = { PATH: process.env.PATH ?? "", DATABASE_URL: h.db.url, DATA_DIR: dataDir, DOKKU_HOSTS: h.sandbox.sshUrl, SSH_PRIVATE_KEY: h.sshPrivateKey, MASTER_KEY: h.masterKey, LOG_LEVEL: "warn" };
    const cli = await runCli(env, ["backups", "download", id, "--out", out], 60_000);
    expect(cli.status, cli.stderr).toBe(0);
    expect(readFileSync(out).equals(downloaded.bytes)).toBe(true);
  }, 120_000);
});
