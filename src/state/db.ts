/**
 * The database connection: DATABASE_URL when set (Supabase in session mode, or any Postgres 15+),
 * otherwise the embedded Postgres in DATA_DIR. postgres.js is the only SQL client.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import postgres, { type Sql } from "postgres";

import { once } from "../once.ts";
import type { DataDirLock } from "./data-dir-lock.ts";
import { openEmbeddedDatabase, restartEmbeddedServer } from "./embedded.ts";
import { MIGRATIONS_DIR } from "./migrate.ts";

export interface Database {
  readonly sql: Sql;
  readonly url: string;
  /** True when an embedded cluster was created by this start (a brand-new database). */
  readonly created: boolean;
  readonly embedded: boolean;
  /**
   * The embedded server when this process owns it (it started or adopted it), for the supervisor
   * (embedded-supervisor.ts); undefined for DATABASE_URL and for a guest of another's server.
   */
  readonly ownedServer: OwnedEmbeddedServer | undefined;
  /** Ends the pool and stops an embedded server this process owns. Idempotent. */
  close(): Promise<void>;
}

export interface OwnedEmbeddedServer {
  readonly dataDir: string;
  readonly port: number;
  /** Starts the server again on the same files and port; `close` then stops the new one. */
  restart(): Promise<void>;
}

export interface ConnectOptions {
  readonly max?: number;
  readonly applicationName?: string;
  /** Server-side statement_timeout of every connection (ms). Default 60 s. */
  readonly statementTimeoutMs?: number;
}

/**
 * Every wait the pool itself can bound is bounded: connecting (connect_timeout), a connection
 * left idle (idle_timeout: closed, so a server restarted meanwhile is met with a fresh one), the
 * age of any connection (max_lifetime: none outlives a failover by much), and each statement on
 * the server (statement_timeout, sent in the startup packet so it holds for every connection,
 * including those opened after a reconnect). What the pool cannot bound (a server that accepted
 * the query and then froze, a wait for a free connection) is bounded by the caller with
 * withDeadline (deadline.ts).
 */
export const POOL_TIMEOUTS = { connectSeconds: 5, idleSeconds: 60, maxLifetimeSeconds: 30 * 60 } as const;

export function connect(url: string, options: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: POOL_TIMEOUTS.connectSeconds,
    idle_timeout: POOL_TIMEOUTS.idleSeconds,
    max_lifetime: POOL_TIMEOUTS.maxLifetimeSeconds,
    connection: {
      application_name: options.applicationName ?? "mindroom-reconciler",
      statement_timeout: options.statementTimeoutMs ?? 60_000,
    },
  });
}

/**
 * DATABASE_URL when set, else the embedded server in DATA_DIR: owned (started or adopted, stopped
 * on close) when `settings.lock` is the DATA_DIR lock (`serve`), otherwise joined as a guest.
 */
export async function openDatabase(
  settings: { databaseUrl: string | undefined; dataDir: string; lock?: DataDirLock; dbStatementTimeoutMs?: number },
  log: (message: string) => void,
  options: ConnectOptions = {},
): Promise<Database> {
  if (settings.databaseUrl) {
    const sql = connect(settings.databaseUrl, withStatementTimeout(options, settings));
    return { sql, url: settings.databaseUrl, created: false, embedded: false, ownedServer: undefined, close: once(() => sql.end({ timeout: 5 })) };
  }
  let server = await openEmbeddedDatabase(settings.dataDir, log, settings.lock ? { lock: settings.lock } : "guest");
  const sql = connect(server.url, withStatementTimeout(options, settings));
  const port = Number(new URL(server.url).port);
  const ownedServer: OwnedEmbeddedServer | undefined = server.owner
    ? {
        dataDir: settings.dataDir,
        port,
        restart: async () => {
          server = await restartEmbeddedServer(settings.dataDir, port, log);
        },
      }
    : undefined;
  return {
    sql,
    url: server.url,
    created: server.created,
    embedded: true,
    ownedServer,
    close: once(async () => {
      await sql.end({ timeout: 5 });
      await server.stop();
    }),
  };
}

function withStatementTimeout(options: ConnectOptions, settings: { dbStatementTimeoutMs?: number }): ConnectOptions {
  return settings.dbStatementTimeoutMs === undefined || options.statementTimeoutMs !== undefined ? options : { ...options, statementTimeoutMs: settings.dbStatementTimeoutMs };
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
