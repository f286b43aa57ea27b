/**
 * The database connection: DATABASE_URL when set (Supabase in session mode, or any Postgres 15+),
 * otherwise the embedded Postgres in DATA_DIR. postgres.js is the only SQL client.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import postgres, { type Sql } from "postgres";

import { once } from "../once.ts";
import type { DataDirLock } from "./data-dir-lock.ts";
import { openEmbeddedDatabase } from "./embedded.ts";
import { MIGRATIONS_DIR } from "./migrate.ts";

export interface Database {
  readonly sql: Sql;
  readonly url: string;
  /** True when an embedded cluster was created by this start (a brand-new database). */
  readonly created: boolean;
  readonly embedded: boolean;
  /** Ends the pool and stops an embedded server this process owns. Idempotent. */
  close(): Promise<void>;
}

export interface ConnectOptions {
  readonly max?: number;
  readonly applicationName?: string;
}

export function connect(url: string, options: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: 10,
    connection: { application_name: options.applicationName ?? "mindroom-reconciler" },
  });
}

/**
 * DATABASE_URL when set, else the embedded server in DATA_DIR: owned (started or adopted, stopped
 * on close) when `settings.lock` is the DATA_DIR lock (`serve`), otherwise joined as a guest.
 */
export async function openDatabase(
  settings: { databaseUrl: string | undefined; dataDir: string; lock?: DataDirLock },
  log: (message: string) => void,
  options: ConnectOptions = {},
): Promise<Database> {
  if (settings.databaseUrl) {
    const sql = connect(settings.databaseUrl, options);
    return { sql, url: settings.databaseUrl, created: false, embedded: false, close: once(() => sql.end({ timeout: 5 })) };
  }
  const server = await openEmbeddedDatabase(settings.dataDir, log, settings.lock ? { lock: settings.lock } : "guest");
  const sql = connect(server.url, options);
  return {
    sql,
    url: server.url,
    created: server.created,
    embedded: true,
    close: once(async () => {
      await sql.end({ timeout: 5 });
      await server.stop();
    }),
  };
}

/** Loads migrations/seed.sql: idempotent, safe to run any number of times. */
export async function seed(sql: Sql): Promise<void> {
  const text = await readFile(join(MIGRATIONS_DIR, "seed.sql"), "utf8");
  await sql.begin((tx) => tx.unsafe(text));
}


/** The same server URL pointed at another database. */
export function withDatabaseName(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
