/**
 * Issue 15 on plain Postgres and on a Supabase-shaped project: API keys are written only through
 * create_api_key and revoke_api_key; scopes are a checked set; a revoked key stays revoked.
 */

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { migrate } from "../../src/state/migrate.ts";
import { createEmptyDatabase, createTestDatabase, FLAVORS, migrateThrough, type TestDatabase } from "../helpers/db.ts";
import { asRole, countRows, createCustomer, SQLSTATE, sqlState } from "./support.ts";

describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
  });

  afterAll(async () => {
    await db?.drop();
  });

  async function keyOf(accountId: string, scopes = ["instances:read"]): Promise<string> {
    const [key] = await asRole(db.sql, "authenticated", accountId, (tx) => tx<{ id: string }[]>`select id from public.create_api_key(${accountId}, 'k', ${scopes})`);
    return key!.id;
  }

  test("a tenant reads its own keys without the hash, and writes none directly", async () => {
    const me = await createCustomer(db.sql);
    const other = await createCustomer(db.sql);
    const mine = await keyOf(me.accountId);
    const theirs = await keyOf(other.accountId);
    const as = (statement: string) => sqlState(asRole(db.sql, "authenticated", me.accountId, (tx) => tx.unsafe(statement)));
    expect(await as(`insert into api_keys (name, key_hash, key_prefix, permissions) values ('x', repeat('e', 64), 'mr_imitate', '{superuser}')`)).toBe(SQLSTATE.insufficientPrivilege);
    expect(await as(`update api_keys set permissions = '{instances:write}' where id = '${mine}'`)).toBe(SQLSTATE.insufficientPrivilege);
    expect(await as(`update api_keys set key_prefix = 'mr_other' where id = '${mine}'`)).toBe(SQLSTATE.insufficientPrivilege);
    expect(await as(`update api_keys set is_active = true where id = '${mine}'`)).toBe(SQLSTATE.insufficientPrivilege);
    expect(await as(`delete from api_keys where id = '${theirs}'`)).toBe(SQLSTATE.insufficientPrivilege);
    expect(await as(`select key_hash from api_keys`)).toBe(SQLSTATE.insufficientPrivilege);
    const seen = await asRole(db.sql, "authenticated", me.accountId, (tx) => tx<{ id: string }[]>`select id, key_prefix, permissions, is_active from api_keys`);
    expect(seen.map((k) => k.id)).toEqual([mine]);
    expect(await countRows(db.sql, "api_keys", `id = '${theirs}' and is_active`)).toBe(1);
  });

  test("create_api_key refuses an unknown scope, naming it; the set holds for every writer", async () => {
    const me = await createCustomer(db.sql);
    const create = asRole(db.sql, "authenticated", me.accountId, (tx) => tx`select * from public.create_api_key(${me.accountId}, 'k', ${["instances:read", "superuser"]})`);
    await expect(create).rejects.toThrow(/unknown API key scope superuser/);
    expect(await sqlState(db.sql`insert into api_keys (account_id, name, key_hash, key_prefix, permissions) values (${me.accountId}, 'op', repeat('f', 64), 'mr_f', '{admin}')`)).toBe(SQLSTATE.checkViolation);
    expect(await countRows(db.sql, "api_keys", `account_id = '${me.accountId}'`)).toBe(0);
  });

  test("the key's prefix is derived from the key, and creation is audited", async () => {
    const me = await createCustomer(db.sql);
    const [k] = await asRole(db.sql, "authenticated", me.accountId, (tx) => tx<{ id: string; api_key: string; key_prefix: string }[]>`
      select * from public.create_api_key(${me.accountId}, 'ci', ${["usage:read", "read"]})`);
    expect(k!.key_prefix).toBe(k!.api_key.slice(0, 11));
    expect(await countRows(db.sql, "audit_logs", `account_id = '${me.accountId}' and action = 'api_key_created' and details->>'api_key_id' = '${k!.id}'`)).toBe(1);
  });

  test("revoke_api_key: the owner revokes once, it is recorded and audited, and it stays revoked", async () => {
    const me = await createCustomer(db.sql);
    const key = await keyOf(me.accountId);
    const revoke = () => asRole(db.sql, "authenticated", me.accountId, (tx) => tx<{ r: boolean }[]>`select public.revoke_api_key(${key}) as r`);
    expect((await revoke())[0]?.r).toBe(true);
    expect((await revoke())[0]?.r, "a second call changes nothing").toBe(false);
    const [row] = await db.sql<{ is_active: boolean; revoked_at: Date | null; revoked_by: string }[]>`select is_active, revoked_at, revoked_by from api_keys where id = ${key}`;
    expect(row).toMatchObject({ is_active: false, revoked_by: `user:${me.accountId}` });
    expect(row!.revoked_at).toBeInstanceOf(Date);
    expect(await countRows(db.sql, "audit_logs", `action = 'api_key_revoked' and details->>'api_key_id' = '${key}'`)).toBe(1);
    expect(await sqlState(asRole(db.sql, "authenticated", me.accountId, (tx) => tx`update api_keys set is_active = true where id = ${key}`))).toBe(SQLSTATE.insufficientPrivilege);
    expect(await sqlState(db.sql`update api_keys set is_active = true, revoked_at = null, revoked_by = null where id = ${key}`), "not even the operator").toBe(SQLSTATE.notInPrerequisiteState);
    const [verified] = await db.sql<{ n: number }[]>`select count(*)::int as n from api_keys where id = ${key} and is_active`;
    expect(verified?.n).toBe(0);
  });

  test("another account's key is unknown to revoke_api_key, exactly like a missing one", async () => {
    const me = await createCustomer(db.sql);
    const other = await createCustomer(db.sql);
    const theirs = await keyOf(other.accountId);
    const answer = async (id: string) => {
      try {
        await asRole(db.sql, "authenticated", me.accountId, (tx) => tx`select public.revoke_api_key(${id})`);
        return "ok";
      } catch (error) {
        const e = error as { code: string; message: string };
        return `${e.code} ${e.message.replace(id, "<id>")}`;
      }
    };
    expect(await answer(theirs)).toBe("P0002 unknown API key <id>");
    expect(await answer(crypto.randomUUID())).toBe("P0002 unknown API key <id>");
    expect(await countRows(db.sql, "api_keys", `id = '${theirs}' and is_active`)).toBe(1);
  });

  test("at most 20 active keys per account; revoking one frees a slot", async () => {
    const me = await createCustomer(db.sql);
    // As the operator (service_role), which the per-day creation quota does not limit.
    const create = () => asRole(db.sql, "service_role", null, (tx) => tx<{ id: string }[]>`select id from public.create_api_key(${me.accountId}, 'k')`);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await create())[0]!.id);
    expect(await sqlState(create())).toBe("PT409");
    await asRole(db.sql, "service_role", null, (tx) => tx`select public.revoke_api_key(${ids[0]!})`);
    expect(await sqlState(create())).toBe("ok");
  });
});

describe("migration 0008 on a database with keys written directly", () => {
  test("revokes keys with unknown scopes (audited), records earlier deactivations, keeps the rest", async () => {
    const db = await createEmptyDatabase();
    try {
      await migrateThrough(db.sql, 7);
      const c = await createCustomer(db.sql);
      const insert = (hash: string, permissions: string[], active: boolean) => db.sql<{ id: string }[]>`
        insert into api_keys (account_id, name, key_hash, key_prefix, permissions, is_active)
        values (${c.accountId}, 'k', ${hash.repeat(64)}, 'mr_x', ${permissions}, ${active}) returning id`;
      const [forged] = await insert("a", ["superuser", "instances:read"], true);
      const [off] = await insert("b", ["read"], false);
      const [good] = await insert("c", ["read"], true);
      await migrate(db.sql);
      const rows = await db.sql<{ id: string; permissions: string[]; is_active: boolean; revoked_by: string | null }[]>`
        select id, permissions, is_active, revoked_by from api_keys where account_id = ${c.accountId}`;
      const byId = Object.fromEntries(rows.map((r) => [r.id, r]));
      expect(byId[forged!.id]).toMatchObject({ permissions: ["instances:read"], is_active: false, revoked_by: "migration 0008: unknown scope" });
      expect(byId[off!.id]).toMatchObject({ is_active: false, revoked_by: "migration 0008: inactive before" });
      expect(byId[good!.id]).toMatchObject({ permissions: ["read"], is_active: true, revoked_by: null });
      expect(await countRows(db.sql, "audit_logs", `action = 'api_key_revoked' and details->>'api_key_id' = '${forged!.id}'`)).toBe(1);
    } finally {
      await db.drop();
    }
  });
});
