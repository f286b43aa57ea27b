import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterEach, describe, expect, test } from "vitest";

import { migrate, migrationStatus, readMigrations } from "../../src/state/migrate.ts";
import { createEmptyDatabase, type TestDatabase } from "../helpers/db.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function emptyDb(): Promise<TestDatabase> {
  const db = await createEmptyDatabase();
  cleanups.push(() => db.drop());
  return db;
}

async function migrationsDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "mindroom-migrations-"));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("migration runner", () => {
  test("applies every file once, then nothing", async () => {
    const db = await emptyDb();
    const dir = await migrationsDir({ "0001_a.sql": "create table a (id int);", "0002_b.sql": "create table b (id int);" });
    expect((await migrate(db.sql, dir)).applied).toEqual(["0001_a.sql", "0002_b.sql"]);
    expect((await migrate(db.sql, dir)).applied).toEqual([]);
    expect(await migrationStatus(db.sql, dir)).toEqual({ pending: 0, current: 2 });
  });

  test("a failing file rolls back the whole run and names the file", async () => {
    const db = await emptyDb();
    const dir = await migrationsDir({ "0001_a.sql": "create table a (id int);", "0002_bad.sql": "create table nonsense(" });
    await expect(migrate(db.sql, dir)).rejects.toThrow(/0002_bad\.sql/);
    const [row] = await db.sql<{ exists: boolean }[]>`select to_regclass('public.a') is not null as exists`;
    expect(row?.exists).toBe(false);
  });

  test("an edited applied migration is refused with its name", async () => {
    const db = await emptyDb();
    const dir = await migrationsDir({ "0001_a.sql": "create table a (id int);" });
    await migrate(db.sql, dir);
    await writeFile(join(dir, "0001_a.sql"), "create table a (id bigint);");
    await expect(migrate(db.sql, dir)).rejects.toThrow(/0001_a\.sql was edited/);
  });

  test("a gap in the numbering is refused", async () => {
    const dir = await migrationsDir({ "0001_a.sql": "select 1;", "0003_c.sql": "select 1;" });
    await expect(readMigrations(dir)).rejects.toThrow(/gap: expected 0002_\*\.sql, found 0003_c\.sql/);
  });

  test("a database newer than the code is refused", async () => {
    const db = await emptyDb();
    const newer = await migrationsDir({ "0001_a.sql": "select 1;", "0002_b.sql": "select 1;" });
    await migrate(db.sql, newer);
    const older = await migrationsDir({ "0001_a.sql": "select 1;" });
    await expect(migrate(db.sql, older)).rejects.toThrow(/0002_b\.sql .* newer than the code/);
  });

  test("the real migrations apply, and every table in public has row level security", async () => {
    const db = await emptyDb();
    const result = await migrate(db.sql);
    expect(result.applied.length).toBe((await readdir("migrations")).filter((f) => /^\d{4}_/.test(f)).length);
    const withoutRls = await db.sql<{ relname: string }[]>`
      select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity`;
    expect(withoutRls.map((r) => r.relname)).toEqual([]);
  });

  test("two migrate processes started at once both succeed and apply each file once", async () => {
    const db = await emptyDb();
    const runs = await Promise.all([runCli(["migrate"], db.url), runCli(["migrate"], db.url)]);
    expect(runs.map((r) => r.code)).toEqual([0, 0]);
    const outputs = runs.map((r) => r.stdout).join("\n");
    expect(outputs).toMatch(/nothing to apply/);
    const rows = await db.sql<{ id: number; count: number }[]>`
      select id, count(*)::int as count from schema_migrations group by id order by id`;
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.count === 1)).toBe(true);
  });
});

function runCli(args: string[], databaseUrl: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["src/bin.mjs", ...args], {
      env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, LOG_LEVEL: "warn" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}
