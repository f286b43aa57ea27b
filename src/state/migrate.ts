/**
 * Forward-only migrations from `migrations/NNNN_name.sql` (STYLE rule 11).
 *
 * Contract: every pending file is applied in ONE transaction under a transaction-scoped advisory
 * lock, so concurrent runners serialise and each file is applied exactly once. The row recording a
 * migration is inserted before its SQL runs. Refused, with a message naming the file: a gap in the
 * numbering, an applied file whose checksum changed, and a database that has migrations this code
 * does not know (it is newer than the code).
 */
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import type { Sql, TransactionSql } from "postgres";

import { TerminalError } from "../errors.ts";

export const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "migrations");

/** Any constant shared by all runners; hashtext keeps it readable in pg_locks. */
const LOCK_NAME = "mindroom_reconciler_migrate";
const FILE_PATTERN = /^(\d{4})_[a-z0-9_]+\.sql$/;

export interface MigrationFile {
  readonly id: number;
  readonly name: string;
  readonly checksum: string;
  readonly text: string;
}

export interface MigrateResult {
  readonly applied: readonly string[];
  readonly current: number;
}

export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((name) => FILE_PATTERN.test(name)).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const text = await readFile(join(dir, name), "utf8");
    files.push({ id: Number(name.slice(0, 4)), name, checksum: sha256(text), text });
  }
  files.forEach((file, index) => {
    if (file.id !== index + 1) {
      throw new TerminalError("MigrationGap", `migration numbering has a gap: expected ${pad(index + 1)}_*.sql, found ${file.name}`);
    }
  });
  return files;
}

export async function migrate(sql: Sql, dir: string = MIGRATIONS_DIR): Promise<MigrateResult> {
  const files = await readMigrations(dir);
  return sql.begin(async (tx) => {
    // A migration may rewrite a large table: the pool's statement_timeout (db.ts) is for the
    // daemon's own statements, not for schema changes, which run to completion or fail whole.
    await tx`set local statement_timeout = 0`;
    await tx`select pg_advisory_xact_lock(hashtext(${LOCK_NAME}))`;
    await ensureMigrationsTable(tx);
    const applied = await tx<{ id: number; name: string; checksum: string }[]>`
      select id, name, checksum from public.schema_migrations order by id`;
    checkApplied(files, applied);
    const pending = files.filter((file) => file.id > applied.length);
    for (const file of pending) {
      await tx`insert into public.schema_migrations (id, name, checksum) values (${file.id}, ${file.name}, ${file.checksum})`;
      await tx.unsafe(file.text).catch((error: unknown) => {
        throw new Error(`migration ${file.name} failed: ${(error as Error).message}`, { cause: error });
      });
    }
    return { applied: pending.map((file) => file.name), current: files.length };
  });
}

/** The migration state without changing anything: for `/readyz` and `doctor`. */
export async function migrationStatus(sql: Sql, dir: string = MIGRATIONS_DIR): Promise<{ pending: number; current: number }> {
  const files = await readMigrations(dir);
  const [table] = await sql<{ exists: boolean }[]>`select to_regclass('public.schema_migrations') is not null as exists`;
  if (!table?.exists) return { pending: files.length, current: 0 };
  const applied = await sql<{ id: number; name: string; checksum: string }[]>`
    select id, name, checksum from public.schema_migrations order by id`;
  checkApplied(files, applied);
  return { pending: files.length - applied.length, current: applied.length };
}

async function ensureMigrationsTable(tx: TransactionSql): Promise<void> {
  // RLS with no policy: invisible to anon and authenticated, like every table of this schema.
  await tx`
    create table if not exists public.schema_migrations (
      id integer primary key,
      name text not null,
      checksum text not null,
      applied_at timestamptz not null default now()
    )`;
  await tx`alter table public.schema_migrations enable row level security`;
}

function checkApplied(files: readonly MigrationFile[], applied: readonly { id: number; name: string; checksum: string }[]): void {
  for (const row of applied) {
    const file = files[row.id - 1];
    if (!file) {
      throw new TerminalError(
        "DatabaseNewer",
        `the database has migration ${row.name} that this code does not know: it is newer than the code; run a newer release`,
      );
    }
    if (file.checksum !== row.checksum) {
      throw new TerminalError(
        "MigrationEdited",
        `migration ${file.name} was edited after it was applied (checksum differs); restore the file and add a new migration instead`,
      );
    }
  }
}

function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

function pad(id: number): string {
  return String(id).padStart(4, "0");
}
