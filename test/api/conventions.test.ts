/**
 * The `/v1` conventions over real HTTP and Postgres: Idempotency-Key, body limits and types,
 * validation errors naming the parameter, per-tier rate limits that recover, per-address limits
 * on failed authentication, batched last_used_at, and 503 when the database does not answer.
 */
import { setTimeout as sleep } from "node:timers/promises";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { ACCOUNTS, ALL_SCOPES, type ApiServer, call, makeKey, startApiServer, STARTER_INSTANCE } from "./api-server.ts";
import { type ResponseChecker, responseChecker } from "./openapi.ts";

/** Failed authentications per address per minute in these tests: one try back every 5 s. */
const FAILED_PER_MINUTE = 12;
let server: ApiServer;
let checker: ResponseChecker;

beforeAll(async () => {
  server = await startApiServer({ failedAuthPerMinute: FAILED_PER_MINUTE, requestTimeoutMs: 1_000 });
  checker = await responseChecker((await call(server, "GET", "/v1/openapi.json")).body);
}, 60_000);

afterAll(async () => {
  await server?.stop();
});

const errorCode = (body: unknown): string => (body as { error: { code: string } }).error.code;

describe("Idempotency-Key", () => {
  test("a replay returns the first response and runs nothing again; another body with the key is 409", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const body = { subject: "Webhook bridge down", description: "Slack stopped answering." };
    const first = await call(server, "POST", "/v1/support/tickets", { key, body, headers: { "idempotency-key": "ticket-1" } });
    const again = await call(server, "POST", "/v1/support/tickets", { key, body, headers: { "idempotency-key": "ticket-1" } });
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    const rows = await server.db.sql<{ count: number }[]>`select count(*)::int as count from public.support_tickets where subject = ${body.subject}`;
    expect(rows[0]!.count).toBe(1);
    const other = await call(server, "POST", "/v1/support/tickets", { key, body: { ...body, subject: "Another" }, headers: { "idempotency-key": "ticket-1" } });
    expect(other.status).toBe(409);
    expect(errorCode(other.body)).toBe("idempotency_key_reused");
    checker.check("POST", "/v1/support/tickets", 409, other.body);
  });

  test("keys are per account: another account's same key runs its own request", async () => {
    const a = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const b = await makeKey(server, ACCOUNTS.starter, ALL_SCOPES);
    const body = { subject: "Same key, two accounts", description: "x" };
    const first = await call(server, "POST", "/v1/support/tickets", { key: a.key, body, headers: { "idempotency-key": "shared" } });
    const second = await call(server, "POST", "/v1/support/tickets", { key: b.key, body, headers: { "idempotency-key": "shared" } });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect((second.body as { id: string }).id).not.toBe((first.body as { id: string }).id);
  });

  test("a refused request (validation) is not remembered: the corrected retry with the same key runs", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const bad = await call(server, "POST", "/v1/support/tickets", { key, body: { subject: "" , description: "x" }, headers: { "idempotency-key": "fix-me" } });
    expect(bad.status).toBe(400);
    const good = await call(server, "POST", "/v1/support/tickets", { key, body: { subject: "Fixed", description: "x" }, headers: { "idempotency-key": "fix-me" } });
    expect(good.status).toBe(201);
  });
});

describe("request bodies and parameters", () => {
  test("a body over 64 KiB is 413, a non-JSON body 415, broken JSON 400, an unknown field 400 naming it", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const big = await call(server, "POST", "/v1/support/tickets", { key, body: { subject: "big", description: "x".repeat(70 * 1024) } });
    expect(big.status).toBe(413);
    expect(errorCode(big.body)).toBe("body_too_large");
    const text = await call(server, "POST", "/v1/support/tickets", { key, body: "subject=x", headers: { "content-type": "application/x-www-form-urlencoded" } });
    expect(text.status).toBe(415);
    const broken = await call(server, "POST", "/v1/support/tickets", { key, body: "{nope" });
    expect(broken.status).toBe(400);
    expect(errorCode(broken.body)).toBe("body_invalid_json");
    const unknown = await call(server, "POST", "/v1/support/tickets", { key, body: { subject: "a", description: "b", priority: "urgent" } });
    expect(unknown.status).toBe(400);
    for (const answer of [big, text, unknown]) checker.check("POST", "/v1/support/tickets", answer.status, answer.body);
  });

  test("validation errors name the parameter", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const limit = await call(server, "GET", "/v1/instances?limit=1000", { key });
    expect(limit.status).toBe(400);
    expect((limit.body as { error: { param: string } }).error.param).toBe("limit");
    const dates = await call(server, "GET", "/v1/usage?from=2026-12-05&to=2026-12-01", { key });
    expect(dates.status).toBe(400);
    expect((dates.body as { error: { param: string } }).error.param).toBe("to");
    const missing = await call(server, "GET", "/v1/usage?from=2026-12-05", { key });
    expect(missing.status).toBe(400);
    expect((missing.body as { error: { param: string } }).error.param).toBe("to");
    checker.check("GET", "/v1/usage", 400, missing.body);
  });

  test("lists say has_more only when there is more: 100 tickets fill a page, the 101st is more", async () => {
    const { key } = await makeKey(server, ACCOUNTS.enterprise, ALL_SCOPES);
    await server.db.sql`
      insert into public.support_tickets (account_id, subject, description)
      select ${ACCOUNTS.enterprise}, 'ticket ' || n, 'x' from generate_series(1, 100) n`;
    const full = await call(server, "GET", "/v1/support/tickets", { key });
    expect((full.body as { data: unknown[] }).data).toHaveLength(100);
    expect((full.body as { has_more: boolean }).has_more).toBe(false);
    await server.db.sql`insert into public.support_tickets (account_id, subject, description) values (${ACCOUNTS.enterprise}, 'one more', 'x')`;
    const more = await call(server, "GET", "/v1/support/tickets", { key });
    expect((more.body as { data: unknown[] }).data).toHaveLength(100);
    expect((more.body as { has_more: boolean }).has_more).toBe(true);
    const instance = "c0000000-0000-4000-8000-000000000004";
    await server.db.sql`
      insert into public.instance_backups (instance_id, backup_type, status, error)
      select ${instance}, 'manual', 'failed', 'test row' from generate_series(1, 101)`;
    const backups = await call(server, "GET", `/v1/instances/${instance}/backups`, { key });
    expect((backups.body as { data: unknown[] }).data).toHaveLength(100);
    expect((backups.body as { has_more: boolean }).has_more).toBe(true);
  });

  test("cursor pagination walks every instance once", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const sub = "b0000000-0000-4000-8000-000000000003";
    for (const name of ["page-one", "page-two"]) {
      await server.db.sql`insert into public.instances (subscription_id, account_id, subdomain, status) values (${sub}, ${ACCOUNTS.pro}, ${name}, 'deprovisioned')`;
    }
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await call(server, "GET", `/v1/instances?limit=1${after ? `&starting_after=${after}` : ""}`, { key });
      expect(page.status).toBe(200);
      const { data, has_more } = page.body as { data: { id: string }[]; has_more: boolean };
      seen.push(...data.map((d) => d.id));
      if (!has_more) break;
      after = data.at(-1)!.id;
    }
    expect(seen).toHaveLength(3);
    expect(new Set(seen).size).toBe(3);
  });
});

describe("actions never raise above what billing allows", () => {
  test("a canceled subscription's instance cannot be started or restarted (409 with the reason); stop still works", async () => {
    const { key } = await makeKey(server, ACCOUNTS.starter, ALL_SCOPES);
    await server.db.sql`update public.subscriptions set status = 'canceled', canceled_at = now() where account_id = ${ACCOUNTS.starter}`;
    try {
      const stop = await call(server, "POST", "/v1/instances/demo-starter/stop", { key });
      expect(stop.status).toBe(202);
      const start = await call(server, "POST", "/v1/instances/demo-starter/start", { key });
      expect(start.status).toBe(409);
      expect(errorCode(start.body)).toBe("subscription_does_not_allow");
      expect((start.body as { error: { message: string } }).error.message).toMatch(/canceled since .*data retained until/);
      const restart = await call(server, "POST", "/v1/instances/demo-starter/restart", { key });
      expect(restart.status).toBe(409);
      expect(errorCode(restart.body)).toBe("instance_not_running");
      const [row] = await server.db.sql<{ desired_state: string | null; restart_requested_at: Date | null }[]>`select desired_state, restart_requested_at from public.instances where id = ${STARTER_INSTANCE}`;
      expect(row).toEqual({ desired_state: "stopped", restart_requested_at: null });
    } finally {
      await server.db.sql`update public.subscriptions set status = 'active', canceled_at = null where account_id = ${ACCOUNTS.starter}`;
    }
  });
});

describe("rate limits", () => {
  test("a starter key gets 60 requests at once, then 429 with Retry-After, and recovers", async () => {
    const { key } = await makeKey(server, ACCOUNTS.starter, ALL_SCOPES);
    const statuses: number[] = [];
    let limited;
    for (let i = 0; i < 70; i++) {
      const answer = await call(server, "GET", "/v1/account", { key });
      statuses.push(answer.status);
      if (answer.status === 429) {
        limited = answer;
        break;
      }
    }
    const served = statuses.filter((s) => s === 200).length;
    expect(served).toBeGreaterThanOrEqual(60);
    expect(served).toBeLessThanOrEqual(63); // one more token per second of the loop at most
    expect(limited?.status).toBe(429);
    expect(errorCode(limited!.body)).toBe("rate_limited");
    const retryAfter = Number(limited!.headers.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(limited!.headers.get("ratelimit-limit")).toBe("60");
    expect(limited!.headers.get("ratelimit-remaining")).toBe("0");
    checker.check("GET", "/v1/account", 429, limited!.body);
    await sleep(retryAfter * 1000 + 100);
    expect((await call(server, "GET", "/v1/account", { key })).status).toBe(200);
    const limitedCount = (await server.registry.getSingleMetric("mindroom_api_rate_limited_total")!.get()).values.find((v) => v.labels.tier === "starter");
    expect(limitedCount?.value).toBeGreaterThanOrEqual(1);
  });

  test("the headers show the tier's limit: 600 for professional", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const answer = await call(server, "GET", "/v1/account", { key });
    expect(answer.headers.get("ratelimit-limit")).toBe("600");
    expect(Number(answer.headers.get("ratelimit-remaining"))).toBe(599);
  });

  test("failed authentications are limited per client address, valid keys from it included", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    const guesses = [];
    for (let i = 0; i <= FAILED_PER_MINUTE; i++) guesses.push(await call(server, "GET", "/v1/account", { key: `mr_${String(i).padStart(64, "0")}` }));
    expect(guesses.slice(0, FAILED_PER_MINUTE).every((g) => g.status === 401)).toBe(true);
    const refused = guesses[FAILED_PER_MINUTE]!;
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    checker.check("GET", "/v1/account", 429, refused.body);
    expect((await call(server, "GET", "/v1/account", { key })).status).toBe(429);
    await sleep(5_500);
    expect((await call(server, "GET", "/v1/account", { key })).status).toBe(200);
  }, 30_000);
});

describe("keys", () => {
  test("last_used_at is written in batches, not per request", async () => {
    const { id, key } = await makeKey(server, ACCOUNTS.enterprise, ALL_SCOPES);
    for (let i = 0; i < 3; i++) expect((await call(server, "GET", "/v1/account", { key })).status).toBe(200);
    const [before] = await server.db.sql<{ last_used_at: Date | null }[]>`select last_used_at from public.api_keys where id = ${id}`;
    expect(before!.last_used_at).toBeNull();
    await server.api.close(); // flushes the batch (the server stops answering /v1 after this)
    const [after] = await server.db.sql<{ last_used_at: Date | null }[]>`select last_used_at from public.api_keys where id = ${id}`;
    expect(after!.last_used_at).toBeInstanceOf(Date);
    server = await restart(server);
  });
});

describe("a database that does not answer", () => {
  test("requests answer 503 with Retry-After within the deadline, and work again after", async () => {
    const { key } = await makeKey(server, ACCOUNTS.pro, ALL_SCOPES);
    expect((await call(server, "GET", `/v1/instances`, { key })).status).toBe(200);
    const locker = server.db.sql.reserve();
    const conn = await locker;
    await conn`begin`;
    await conn`lock table public.api_keys in access exclusive mode`;
    const started = Date.now();
    const stalled = await call(server, "GET", "/v1/instances", { key });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(stalled.status).toBe(503);
    expect(errorCode(stalled.body)).toBe("database_timeout");
    expect(stalled.headers.get("retry-after")).toBe("5");
    await conn`rollback`;
    conn.release();
    expect((await call(server, "GET", `/v1/instances/${STARTER_INSTANCE}`, { key })).status).toBe(404);
  });
});

/** A fresh server on a fresh database, for the tests after one that closed the API. */
async function restart(old: ApiServer): Promise<ApiServer> {
  await old.stop().catch(() => {});
  const fresh = await startApiServer({ failedAuthPerMinute: FAILED_PER_MINUTE, requestTimeoutMs: 1_000 });
  return fresh;
}
