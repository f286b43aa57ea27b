/**
 * The `/v1` API on a real node:http server against a real, seeded Postgres, with keys of every
 * kind the tests need and a real (local, encrypted) backup store.
 */
import { mkdtemp, rm } from "node:fs/promises";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { pino } from "pino";
import { Registry } from "prom-client";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import type { BackupStore } from "../../src/drivers/backup-store/types.ts";
import { closeServer, createHttpServer, listen } from "../../src/http.ts";
import { openArchive } from "../../src/runtime/backups.ts";
import { type Api, createApi } from "../../src/sources/api/server.ts";
import { createApiKey } from "../../src/state/api-keys.ts";
import { seed } from "../../src/state/db.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type ResponseChecker, responseChecker } from "./openapi.ts";

export const ACCOUNTS = {
  free: "a0000000-0000-4000-8000-000000000001",
  starter: "a0000000-0000-4000-8000-000000000002",
  pro: "a0000000-0000-4000-8000-000000000003",
  enterprise: "a0000000-0000-4000-8000-000000000004",
} as const;
export const STARTER_INSTANCE = "c0000000-0000-4000-8000-000000000002";
export const PRO_INSTANCE = "c0000000-0000-4000-8000-000000000003";
export const ALL_SCOPES = ["instances:read", "instances:write", "backups:read", "backups:write", "usage:read", "support:write"];
export const MASTER_KEY = "test-master-key-of-at-least-32-characters!";

export interface ApiServer {
  readonly url: string;
  readonly db: TestDatabase;
  readonly api: Api;
  readonly registry: Registry;
  readonly store: BackupStore;
  readonly reconcileRequests: string[];
  /** Checks responses against this server's /v1/openapi.json (loaded once). */
  checker(): Promise<ResponseChecker>;
  stop(): Promise<void>;
}

export interface ApiServerOptions {
  readonly failedAuthPerMinute?: number;
  readonly requestTimeoutMs?: number;
  readonly manualBackupsPerDay?: number;
}

export async function startApiServer(options: ApiServerOptions = {}): Promise<ApiServer> {
  const db = await createTestDatabase({ max: 10 });
  await seed(db.sql);
  const backupDir = await mkdtemp(join(tmpdir(), "mindroom-api-"));
  const store = createLocalStore(backupDir);
  const registry = new Registry();
  const reconcileRequests: string[] = [];
  const api = await createApi({
    sql: db.sql,
    logger: pino({ level: "silent" }),
    registry,
    requestTimeoutMs: options.requestTimeoutMs ?? 5_000,
    gracePeriodMs: 7 * 86_400_000,
    retentionPeriodMs: 30 * 86_400_000,
    manualBackupsPerDay: options.manualBackupsPerDay ?? 5,
    openArchive: (backupId, signal) => openArchive({ sql: db.sql, store, masterKey: MASTER_KEY }, backupId, signal),
    requestReconcile: async (subscriptionId) => {
      reconcileRequests.push(subscriptionId);
    },
    failedAuthPerMinute: options.failedAuthPerMinute ?? 100_000,
  });
  const server: Server = createHttpServer(
    Object.fromEntries(["GET", "POST", "PUT", "DELETE"].map((method) => [`${method} /v1/*`, api.handler])),
    (error) => console.error(error),
  );
  const bound = await listen(server, 0, "127.0.0.1");
  let checker: Promise<ResponseChecker> | undefined;
  return {
    checker: () => (checker ??= responseChecker(api.document())),
    url: `http://127.0.0.1:${bound.port}`,
    db,
    api,
    registry,
    store,
    reconcileRequests,
    stop: async () => {
      await closeServer(server);
      await api.close();
      await db.drop();
      await rm(backupDir, { recursive: true, force: true });
    },
  };
}

/** A key of `account` with `scopes`; `state` makes it revoked or expired after creation. */
export async function makeKey(server: ApiServer, account: string, scopes: readonly string[], state: "active" | "revoked" | "expired" = "active"): Promise<{ id: string; key: string }> {
  const created = await createApiKey(server.db.sql, account, `test ${state} ${scopes.join(",")}`, scopes, null);
  if (state === "revoked") await server.db.sql`update public.api_keys set is_active = false where id = ${created.id}`;
  if (state === "expired") await server.db.sql`update public.api_keys set expires_at = now() - interval '1 minute' where id = ${created.id}`;
  return { id: created.id, key: created.key };
}

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
  readonly bytes: Buffer;
}

/**
 * One request; every JSON answer of a documented operation is checked against /v1/openapi.json
 * (a route the document does not have may only answer 404).
 */
export async function call(server: ApiServer, method: string, path: string, options: { key?: string | undefined; body?: unknown; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.key) headers["authorization"] = `Bearer ${options.key}`;
  if (options.body !== undefined) headers["content-type"] ??= "application/json";
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    ...(options.body !== undefined && { body: typeof options.body === "string" ? options.body : JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const type = response.headers.get("content-type") ?? "";
  const body = type.includes("json") && bytes.length > 0 ? (JSON.parse(bytes.toString("utf8")) as unknown) : undefined;
  if (body !== undefined && !path.startsWith("/v1/openapi.json")) conforms(await server.checker(), method, path, response.status, body);
  return { status: response.status, headers: response.headers, body, bytes };
}

function conforms(checker: ResponseChecker, method: string, path: string, status: number, body: unknown): void {
  try {
    checker.checkPath(method, path, status, body);
  } catch (error) {
    if (status === 404 && /matches no operation/.test((error as Error).message)) return;
    throw error;
  }
}
