/**
 * A fresh database per caller, cloned from the migrated template built by test/global-setup.ts
 * (graphile-worker's createTestDatabase). Real Postgres, never a mock.
 */
import { randomBytes } from "node:crypto";

import type { Sql } from "postgres";
import { inject } from "vitest";

import { connect, withDatabaseName } from "../../src/state/db.ts";

export interface TestDatabase {
  /** Superuser connection to the new database. */
  readonly sql: Sql;
  readonly url: string;
  readonly name: string;
  /** Closes `sql` and drops the database. */
  drop(): Promise<void>;
}

/** A new database with every migration applied (no seed). */
export function createTestDatabase(options: { max?: number } = {}): Promise<TestDatabase> {
  return createDatabase(inject("pgTemplate"), options.max ?? 5);
}

/** A new empty database (no migrations): for the migration runner's own tests. */
export function createEmptyDatabase(): Promise<TestDatabase> {
  return createDatabase(undefined, 5);
}

async function createDatabase(template: string | undefined, max: number): Promise<TestDatabase> {
  const adminUrl = inject("pgAdminUrl");
  const name = `mindroom_test_${randomBytes(6).toString("hex")}`;
  await withAdmin(adminUrl, (admin) => admin.unsafe(`create database ${name}${template ? ` template ${template}` : ""}`));
  const url = withDatabaseName(adminUrl, name);
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
