/**
 * `mindroom-reconciler keys create | list | revoke` through the real CLI against real Postgres.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { seed } from "../../src/state/db.ts";
import { runCli } from "../helpers/cli.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
let dataDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
  dataDir = mkdtempSync(join(tmpdir(), "mindroom-keys-"));
});

afterAll(async () => {
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
});

function cli(...args: string[]) {
  return runCli({ PATH: process.env.PATH ?? "", DATABASE_URL: db.url, DATA_DIR: dataDir, LOG_LEVEL: "warn" }, args, 60_000);
}

describe("keys", () => {
  test("create --json prints the key once; only its sha256 is stored; list shows the prefix, never the key", async () => {
    const created = await cli("keys", "create", "--account", "demo-pro@example.com", "--name", "CI deploys", "--scopes", "instances:write,read", "--expires", "90d", "--json");
    expect(created.status, created.stderr).toBe(0);
    const out = JSON.parse(created.stdout) as { id: string; key: string; prefix: string; scopes: string[] };
    expect(Object.keys(out).sort()).toEqual(["id", "key", "prefix", "scopes"]);
    expect(out.key).toMatch(/^mr_[0-9a-f]{64}$/);
    expect(out.prefix).toBe(out.key.slice(0, 11));
    expect(out.scopes).toEqual(["instances:write", "read"]);
    const [row] = await db.sql<{ key_hash: string; expires_at: Date }[]>`select key_hash, expires_at from public.api_keys where id = ${out.id}`;
    expect(row!.key_hash).toBe(createHash("sha256").update(out.key).digest("hex"));
    expect(Math.abs(row!.expires_at.getTime() - (Date.now() + 90 * 86_400_000))).toBeLessThan(120_000);
    const listed = await cli("keys", "list", "--account", "a0000000-0000-4000-8000-000000000003");
    expect(listed.status).toBe(0);
    expect(listed.stdout).toContain(out.prefix);
    expect(listed.stdout).not.toContain(out.key);
    expect(listed.stdout).toContain("CI deploys");
  });

  test("revoke revokes once, says so the second time, and refuses an unknown id", async () => {
    const created = JSON.parse((await cli("keys", "create", "--account", "demo-starter@example.com", "--name", "temp", "--scopes", "usage:read", "--json")).stdout) as { id: string };
    const first = await cli("keys", "revoke", created.id);
    expect(first.status).toBe(0);
    expect(first.stdout).toContain("revoked");
    const [row] = await db.sql<{ is_active: boolean; revoked_by: string }[]>`select is_active, revoked_by from public.api_keys where id = ${created.id}`;
    expect(row).toEqual({ is_active: false, revoked_by: "operator:cli" });
    expect((await cli("keys", "revoke", created.id)).stdout).toContain("already revoked");
    const unknown = await cli("keys", "revoke", "00000000-0000-4000-8000-000000000000");
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain("unknown API key");
  });

  test("bad input: an unknown scope names it (exit 2), an unknown account exits 1, a bad duration exits 2", async () => {
    const scope = await cli("keys", "create", "--account", "demo-pro@example.com", "--name", "x", "--scopes", "instances:read,admin");
    expect(scope.status).toBe(2);
    expect(scope.stderr).toContain("admin");
    const account = await cli("keys", "create", "--account", "nobody@example.com", "--name", "x", "--scopes", "read");
    expect(account.status).toBe(1);
    expect(account.stderr).toContain("nobody@example.com");
    const expires = await cli("keys", "create", "--account", "demo-pro@example.com", "--name", "x", "--scopes", "read", "--expires", "soon");
    expect(expires.status).toBe(2);
    const missing = await cli("keys", "create", "--account", "demo-pro@example.com");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("--scopes");
  });
});
