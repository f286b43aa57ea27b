/**
 * Privileges that must hold on plain Postgres AND on a Supabase-shaped project (issue 14): the
 * migrations need no superuser, and what later migrations create stays closed to the API roles
 * although Supabase's default privileges open every new object in `public` to them.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { readMigrations } from "../../src/state/migrate.ts";
import { createTestDatabase, FLAVORS, type TestDatabase } from "../helpers/db.ts";

/** The functions a signed-in dashboard user may call; a new one must be added here on purpose. */
const TENANT_FUNCTIONS = [
  "check_usage_limits(uuid)",
  "check_user_permission(uuid,text)",
  "create_api_key(uuid,text,text[],timestamp with time zone)",
  "deprovision_instance(uuid,text)",
  "get_all_user_instances(uuid)",
  "get_billing_metrics(uuid,date,date)",
  "get_user_instance(uuid)",
  "has_active_subscription(uuid)",
  "provision_instance(uuid,jsonb)",
  "revoke_api_key(uuid)",
];

describe.each(FLAVORS)("on %s Postgres", (flavor) => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase({ flavor });
  });

  afterAll(async () => {
    await db?.drop();
  });

  test("every migration is applied", async () => {
    const applied = await db.sql<{ name: string }[]>`select name from public.schema_migrations order by id`;
    expect(applied.map((row) => row.name)).toEqual((await readMigrations()).map((file) => file.name));
  });

  test("anon may execute no function of public; authenticated exactly the reviewed dashboard functions", async () => {
    const executable = (role: string) => db.sql<{ fn: string }[]>`
      select regexp_replace(p.oid::regprocedure::text, '^public\\.', '') as fn
      from pg_proc p
      where p.pronamespace = 'public'::regnamespace and p.prokind in ('f', 'p')
        and has_function_privilege(${role}, p.oid, 'execute')
      order by 1`;
    expect((await executable("anon")).map((r) => r.fn)).toEqual([]);
    expect((await executable("authenticated")).map((r) => r.fn)).toEqual(TENANT_FUNCTIONS);
  });

  test("a function, table and sequence created after the migrations are closed to anon and authenticated", async () => {
    await db.sql.begin(async (tx) => {
      await tx`create function public.later_reads_accounts() returns bigint language sql security definer set search_path = '' as 'select count(*) from public.accounts'`;
      await tx`create table public.later_table (id bigserial primary key)`;
    });
    for (const role of ["anon", "authenticated"]) {
      const [p] = await db.sql<{ fn: boolean; tbl: boolean; seq: boolean }[]>`
        select has_function_privilege(${role}, 'public.later_reads_accounts()', 'execute') as fn,
               has_table_privilege(${role}, 'public.later_table', 'select, insert, update, delete') as tbl,
               has_sequence_privilege(${role}, 'public.later_table_id_seq', 'usage, select, update') as seq`;
      expect(p, role).toEqual({ fn: false, tbl: false, seq: false });
    }
    const [service] = await db.sql<{ fn: boolean }[]>`select has_function_privilege('service_role', 'public.later_reads_accounts()', 'execute') as fn`;
    expect(service?.fn, "service_role keeps what it needs").toBe(true);
  });
});

describe("the Supabase-shaped project", () => {
  let shaped: TestDatabase;

  beforeAll(async () => {
    shaped = await createTestDatabase({ flavor: "supabase" });
  });

  afterAll(async () => {
    await shaped?.drop();
  });

  test("the migrations were applied by postgres, a non-superuser with BYPASSRLS", async () => {
    const [me] = await shaped.sql<{ name: string; super: boolean; bypass: boolean }[]>`
      select rolname as name, rolsuper as super, rolbypassrls as bypass from pg_roles where rolname = current_user`;
    expect(me).toEqual({ name: "postgres", super: false, bypass: true });
    const [owner] = await shaped.sql<{ owner: string }[]>`select tableowner as owner from pg_tables where schemaname = 'public' and tablename = 'instances'`;
    expect(owner?.owner).toBe("postgres");
    const [defaults] = await shaped.sql<{ n: number }[]>`
      select count(*)::int as n from pg_default_acl d join pg_roles r on r.oid = d.defaclrole
      where r.rolname = 'supabase_admin' and d.defaclobjtype = 'f' and d.defaclacl::text like '%anon=X%'`;
    expect(defaults?.n, "the fixture really grants EXECUTE to anon on supabase_admin's new functions").toBe(1);
  });

});
