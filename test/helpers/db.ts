/**
 * A fresh database per caller, cloned from the migrated template built by test/global-setup.ts
 * (graphile-worker's createTestDatabase). Real Postgres, never a mock.
 */
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Sql } from "postgres";
import { inject } from "vitest";

import { connect, withDatabaseName } from "../../src/state/db.ts";
import { migrate, MIGRATIONS_DIR } from "../../src/state/migrate.ts";

/**
 * `plain`: the main test Postgres (plain Postgres, the embedded default); `sql` is its superuser.
 * `supabase`: the Supabase-shaped cluster; `sql` is `postgres`, a non-superuser with BYPASSRLS,
 * exactly the role a Supabase project's owner and this controller connect as.
 */
export type Flavor = "plain" | "supabase";
export const FLAVORS: readonly Flavor[] = ["plain", "supabase"];

export interface TestDatabase {
  /** The owner's connection to the new database (see Flavor). */
  readonly sql: Sql;
  readonly url: string;
  readonly name: string;
  /** Closes `sql` and drops the database. */
  drop(): Promise<void>;
}

/** A new database with every migration applied (no seed). */
export function createTestDatabase(options: { max?: number; flavor?: Flavor } = {}): Promise<TestDatabase> {
  if (options.flavor === "supabase") {
    return createDatabase(inject("supabaseAdminUrl"), inject("supabasePostgresUrl"), inject("supabaseTemplate"), options.max ?? 5);
  }
  return createDatabase(inject("pgAdminUrl"), inject("pgAdminUrl"), inject("pgTemplate"), options.max ?? 5);
}

/** A new empty database (no migrations): for the migration runner's own tests. */
export function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase(inject("pgAdminUrl"), inject("pgAdminUrl"), undefined, 5);
}

async function createDatabase(adminUrl: string, ownerUrl: string, template: string | undefined, max: number): Promise<TestDatabase> {
  const name = `mindroom_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (admin) => admin.unsafe(`create database ${name}${template ? ` template ${template}` : ""}`));
  const url = withDatabaseName(ownerUrl, name);
  const sql = connect(url, { max });
  return {
    sql,
    url,
    name,
    drop: async () => {
      await sql.end({ timeout: 5 });
      await withAdmin(adminUrl, (admin) => admin.unsafe(`drop database if exists ${name} with (force)`));
    },
  };
}

async function withAdmin(adminUrl: string, fn: (admin: Sql) => Promise<unknown>): Promise<void> {
  const admin = connect(adminUrl, { max: 1 });
  try {
    await fn(admin);
  } finally {
    await admin.end();
  }
}

/**
 * Applies migrations 0001 up to `last` only, as a database that was migrated before the later
 * files existed: for the tests of what a later migration does to existing rows.
 */
export async function migrateThrough(sql: Sql, last: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mindroom-migrations-"));
  try {
    for (const name of await readdir(MIGRATIONS_DIR)) {
      const id = /^(\d{4})_/.exec(name)?.[1];
      if (id !== undefined && Number(id) <= last) await copyFile(join(MIGRATIONS_DIR, name), join(dir, name));
    }
    await migrate(sql, dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
