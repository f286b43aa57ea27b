/**
 * Every `/v1` endpoint against every kind of caller, over real HTTP and real Postgres: no key,
 * a revoked key, an expired key, a free-tier key, a key without the route's scope, another
 * account's key, and the right key. Every JSON response is checked against /v1/openapi.json.
 */
import { randomBytes } from "node:crypto";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createBackupPort } from "../../src/runtime/backups.ts";
import { ACCOUNTS, ALL_SCOPES, type Answer, type ApiServer, call, makeKey, MASTER_KEY, PRO_INSTANCE, startApiServer,STARTER_INSTANCE } from "./api-server.ts";
import { type ResponseChecker, responseChecker } from "./openapi.ts";

type Caller = "none" | "revoked" | "expired" | "free" | "unscoped" | "other" | "owner";
const CALLERS: readonly Caller[] = ["none", "revoked", "expired", "free", "unscoped", "other", "owner"];

interface Endpoint {
  readonly method: "GET" | "POST";
  readonly template: string;
  readonly scope: string | null;
  /** The right key's status. */
  readonly ok: number;
  /** Names one object of the owner: another account gets 404. Lists answer 200 without it. */
  readonly ownObject: boolean;
  readonly body?: unknown;
  readonly query?: string;
}

const ENDPOINTS: readonly Endpoint[] = [
  { method: "GET", template: "/v1/account", scope: null, ok: 200, ownObject: false },
  { method: "GET", template: "/v1/instances", scope: "instances:read", ok: 200, ownObject: false },
  { method: "GET", template: "/v1/instances/:id", scope: "instances:read", ok: 200, ownObject: true },
  { method: "POST", template: "/v1/instances/:id/stop", scope: "instances:write", ok: 202, ownObject: true },
  { method: "POST", template: "/v1/instances/:id/start", scope: "instances:write", ok: 202, ownObject: true },
  { method: "POST", template: "/v1/instances/:id/restart", scope: "instances:write", ok: 202, ownObject: true },
  { method: "POST", template: "/v1/instances/:id/reconcile", scope: "instances:write", ok: 202, ownObject: true },
  { method: "GET", template: "/v1/instances/:id/backups", scope: "backups:read", ok: 200, ownObject: true },
  { method: "POST", template: "/v1/instances/:id/backups", scope: "backups:write", ok: 202, ownObject: true },
  { method: "GET", template: "/v1/backups/:backup", scope: "backups:read", ok: 200, ownObject: true },
  { method: "GET", template: "/v1/backups/:backup/download", scope: "backups:read", ok: 200, ownObject: true },
  { method: "POST", template: "/v1/backups/:backup/restore", scope: "backups:write", ok: 202, ownObject: true },
  { method: "GET", template: "/v1/usage", scope: "usage:read", ok: 200, ownObject: false, query: "?from=2026-01-01&to=2026-12-31" },
  { method: "GET", template: "/v1/support/tickets", scope: "support:write", ok: 200, ownObject: false },
  { method: "POST", template: "/v1/support/tickets", scope: "support:write", ok: 201, ownObject: false, body: { subject: "Agents are slow", description: "Since this morning." } },
];

const EXPECTED_FAILURE: Partial<Record<Caller, { status: number; code: string }>> = {
  none: { status: 401, code: "api_key_missing" },
  revoked: { status: 401, code: "api_key_revoked" },
  expired: { status: 401, code: "api_key_expired" },
  free: { status: 403, code: "tier_no_api_access" },
};

let server: ApiServer;
let checker: ResponseChecker;
let backupId: string;
let archive: Buffer;
const keys = new Map<string, string>();

/** A real completed backup of the owner's instance: encrypted into the local store. */
async function completedBackup(): Promise<{ id: string; bytes: Buffer }> {
  const port = createBackupPort({ sql: server.db.sql, store: server.store, masterKey: MASTER_KEY, retentionMs: 86_400_000, manualPerDay: 5 });
  const record = await port.begin(STARTER_INSTANCE, "backend", "manual");
  const sink = await port.open(STARTER_INSTANCE, record);
  const bytes = randomBytes(200_000);
  sink.stream.end(bytes);
  await sink.commit();
  return { id: record.id, bytes };
}

beforeAll(async () => {
  server = await startApiServer();
  const owner = await makeKey(server, ACCOUNTS.starter, ALL_SCOPES);
  keys.set("owner", owner.key);
  keys.set("revoked", (await makeKey(server, ACCOUNTS.starter, ALL_SCOPES, "revoked")).key);
  keys.set("expired", (await makeKey(server, ACCOUNTS.starter, ALL_SCOPES, "expired")).key);
  keys.set("free", (await makeKey(server, ACCOUNTS.free, ALL_SCOPES)).key);
  keys.set("other", (await makeKey(server, ACCOUNTS.pro, ALL_SCOPES)).key);
  for (const scope of ALL_SCOPES) keys.set(`without ${scope}`, (await makeKey(server, ACCOUNTS.starter, ALL_SCOPES.filter((s) => s !== scope))).key);
  ({ id: backupId, bytes: archive } = await completedBackup());
  checker = await responseChecker((await call(server, "GET", "/v1/openapi.json")).body);
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

function pathOf(endpoint: Endpoint): string {
  return endpoint.template.replace(":id", "demo-starter").replace(":backup", backupId) + (endpoint.query ?? "");
}

function keyFor(caller: Caller, endpoint: Endpoint): string | undefined {
  if (caller === "none") return undefined;
  if (caller === "unscoped") return keys.get(endpoint.scope ? `without ${endpoint.scope}` : "owner");
  return keys.get(caller);
}

/** Checks the body against the document (binary downloads have no JSON body to check). */
function conforms(endpoint: Endpoint, answer: Answer): void {
  const template = endpoint.template.replace(":backup", ":id");
  if (answer.headers.get("content-type")?.includes("json")) checker.check(endpoint.method, template, answer.status, answer.body);
  expect(answer.headers.get("request-id")).toMatch(/^req_[0-9a-f]{24}$/);
}

describe.each(CALLERS)("caller: %s", (caller) => {
  test.each(ENDPOINTS.map((e) => [`${e.method} ${e.template}`, e] as const))("%s", async (_name, endpoint) => {
    const answer = await call(server, endpoint.method, pathOf(endpoint), { key: keyFor(caller, endpoint), ...(endpoint.body !== undefined && { body: endpoint.body }) });
    conforms(endpoint, answer);
    const failure = EXPECTED_FAILURE[caller] ?? (caller === "unscoped" && endpoint.scope ? { status: 403, code: "scope_missing" } : undefined);
    if (failure) {
      expect(answer.status).toBe(failure.status);
      expect((answer.body as { error: { code: string } }).error.code).toBe(failure.code);
      if (failure.code === "scope_missing") expect((answer.body as { error: { message: string } }).error.message).toContain(endpoint.scope);
      return;
    }
    if (caller === "other") return expectNothingOfTheOwner(endpoint, answer);
    expect(answer.status, JSON.stringify(answer.body)).toBe(endpoint.ok);
    if (endpoint.template.endsWith("/download")) expect(answer.bytes.equals(archive)).toBe(true);
    expect(answer.headers.get("ratelimit-limit")).toBe("60");
  });
});

function expectNothingOfTheOwner(endpoint: Endpoint, answer: Answer): void {
  if (endpoint.ownObject) {
    expect(answer.status).toBe(404);
    expect((answer.body as { error: { code: string } }).error.code).toBe("resource_missing");
    return;
  }
  expect(answer.status).toBe(endpoint.ok);
  const text = JSON.stringify(answer.body);
  expect(text).not.toContain(STARTER_INSTANCE);
  expect(text).not.toContain(ACCOUNTS.starter);
  expect(text).not.toContain("demo-starter");
  if (endpoint.template === "/v1/instances") expect(text).toContain(PRO_INSTANCE);
}

describe("another account's objects", () => {
  test("a ticket cannot name another account's instance, and a write by id changes nothing", async () => {
    const other = keys.get("other")!;
    const ticket = await call(server, "POST", "/v1/support/tickets", { key: other, body: { subject: "x", description: "y", instance_id: STARTER_INSTANCE } });
    expect(ticket.status).toBe(404);
    expect((ticket.body as { error: { param: string } }).error.param).toBe("instance_id");
    const before = await server.db.sql`select desired_state, generation from public.instances where id = ${STARTER_INSTANCE}`;
    const stop = await call(server, "POST", `/v1/instances/${STARTER_INSTANCE}/stop`, { key: other });
    expect(stop.status).toBe(404);
    expect(await server.db.sql`select desired_state, generation from public.instances where id = ${STARTER_INSTANCE}`).toEqual(before);
  });

  test("the 404 for another account's id reads exactly like the one for an id that does not exist", async () => {
    const other = keys.get("other")!;
    const theirs = await call(server, "GET", `/v1/backups/${backupId}`, { key: other });
    const missing = await call(server, "GET", "/v1/backups/00000000-0000-4000-8000-000000000000", { key: other });
    const strip = (answer: Answer) => JSON.stringify(answer.body).replace(/req_[0-9a-f]+/, "").replace(/[0-9a-f-]{36}/, "ID");
    expect(theirs.status).toBe(404);
    expect(strip(theirs)).toBe(strip(missing));
  });
});

describe("audit", () => {
  test("every write through the API is audited as api_key:<id>", async () => {
    const rows = await server.db.sql<{ action: string; actor: string }[]>`
      select action, actor from public.audit_logs where actor like 'api_key:%' order by id`;
    const actions = new Set(rows.map((row) => row.action));
    for (const action of ["instance_desired_state_changed", "instance_restart_requested", "instance_reconcile_requested", "backup_requested", "restore_requested", "support_ticket_created"]) {
      expect(actions, action).toContain(action);
    }
    const ownerKey = await server.db.sql<{ id: string }[]>`select id from public.api_keys where key_hash = encode(sha256(convert_to(${keys.get("owner")!}, 'UTF8')), 'hex')`;
    expect(rows.some((row) => row.actor === `api_key:${ownerKey[0]!.id}`)).toBe(true);
    expect(server.reconcileRequests).toContain("b0000000-0000-4000-8000-000000000002");
  });
});
