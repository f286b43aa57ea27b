/**
 * Postgres for benchmarks: the server at DATABASE_URL when given, otherwise an embedded server in a
 * temporary directory. Each `createDatabase` is a fresh, migrated database of its own, so runs in
 * one process share no state. `close` drops what is left, stops the embedded server and removes
 * the directory; it is safe to call after a partial start.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { Sql } from "postgres";

import { connect, withDatabaseName } from "../../src/state/db.ts";
import { type EmbeddedDatabase, openOwnEmbeddedDatabase } from "../../src/state/embedded.ts";
import { migrate } from "../../src/state/migrate.ts";

export interface BenchDatabase {
  readonly sql: Sql;
  /** The database's URL, for a process of its own (it holds the credentials: never print it). */
  readonly url: string;
  /** Ends the pool and drops the database. Idempotent. */
  drop(): Promise<void>;
}

export interface BenchPostgres {
  /** Where the server came from, for the report. */
  readonly source: "DATABASE_URL" | "embedded";
  createDatabase(label: string, options?: { max?: number }): Promise<BenchDatabase>;
  close(): Promise<void>;
}

export async function openBenchPostgres(databaseUrl: string | undefined): Promise<BenchPostgres> {
  const dir = databaseUrl ? null : await mkdtemp(join(tmpdir(), "mindroom-bench-pg-"));
  let server: EmbeddedDatabase | null = null;
  try {
    server = dir ? await openOwnEmbeddedDatabase(dir, () => {}) : null;
  } catch (error) {
    if (dir) await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const adminUrl = databaseUrl ?? server!.url;
  const admin = connect(adminUrl, { max: 1, applicationName: "mindroom-bench" });
  const open = new Set<BenchDatabase>();
  return {
    source: databaseUrl ? "DATABASE_URL" : "embedded",
    createDatabase: async (label, options) => {
      const name = `mindroom_bench_${label.replace(/[^a-z0-9]/g, "")}_${Math.random().toString(36).slice(2, 10)}`;
      await admin`create database ${admin(name)}`;
      const url = withDatabaseName(adminUrl, name);
      const sql = connect(url, { max: options?.max ?? 20, applicationName: "mindroom-bench" });
      let dropped: Promise<void> | undefined;
      const database: BenchDatabase = {
        sql,
        url,
        drop: () =>
          (dropped ??= (async () => {
            open.delete(database);
            await sql.end({ timeout: 5 });
            await admin`drop database if exists ${admin(name)} with (force)`;
          })()),
      };
      open.add(database);
      await migrate(sql);
      return database;
    },
    close: async () => {
      const results = await Promise.allSettled([...open].map((database) => database.drop()));
      await admin.end({ timeout: 5 });
      await server?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
      const failed = results.find((result) => result.status === "rejected");
      if (failed) throw new Error("could not drop a benchmark database", { cause: failed.reason });
    },
  };
}
