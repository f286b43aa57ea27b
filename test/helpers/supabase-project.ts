/**
 * A second Postgres cluster shaped like a Supabase project (issue 14): its bootstrap superuser is
 * `supabase_admin`, `postgres` is a non-superuser with BYPASSRLS, and the API roles get ALL on new
 * objects in `public` through default privileges (test/fixtures/supabase/project.sql). The
 * migrations are applied as `postgres`, as `supabase db push` would, so a migration that needs a
 * superuser fails the whole test run at setup.
 */
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

import { connect, withDatabaseName } from "../../src/state/db.ts";
import { type EmbeddedDatabase, openOwnEmbeddedDatabase } from "../../src/state/embedded.ts";
import { migrate } from "../../src/state/migrate.ts";

export const SUPABASE_TEMPLATE_DATABASE = "mindroom_test_supabase_template";
const PROJECT_SQL = join(import.meta.dirname, "..", "fixtures", "supabase", "project.sql");

export interface SupabaseProject {
  readonly server: EmbeddedDatabase;
  /** supabase_admin (superuser) on the `postgres` database: creates and drops test databases. */
  readonly adminUrl: string;
  /** The same server as `postgres` (the migrating, non-superuser role). */
  readonly postgresUrl: string;
}

/** Starts the cluster in `dir`, builds the migrated template database, and returns its URLs. */
export async function startSupabaseProject(dir: string): Promise<SupabaseProject> {
  // openEmbeddedDatabase keeps its superuser's name and password here; Supabase's is supabase_admin.
  await writeFile(join(dir, "pg-credentials.json"), JSON.stringify({ user: "supabase_admin", password: randomBytes(18).toString("hex") }), { mode: 0o600 });
  const server = await openOwnEmbeddedDatabase(dir, () => {});
  const password = randomBytes(18).toString("hex");
  const admin = connect(server.url, { max: 1 });
  try {
    // Hex only: nothing to quote.
    await admin.unsafe(`create role postgres login nosuperuser createdb createrole replication bypassrls password '${password}'`);
    await admin.unsafe(`create database ${SUPABASE_TEMPLATE_DATABASE}`);
  } finally {
    await admin.end();
  }
  const templateAdmin = connect(withDatabaseName(server.url, SUPABASE_TEMPLATE_DATABASE), { max: 1 });
  try {
    await templateAdmin.unsafe(await readFile(PROJECT_SQL, "utf8"));
  } finally {
    await templateAdmin.end();
  }
  const postgresUrl = asPostgres(server.url, password);
  const migrator = connect(withDatabaseName(postgresUrl, SUPABASE_TEMPLATE_DATABASE), { max: 1 });
  try {
    await migrate(migrator);
  } finally {
    await migrator.end();
  }
  return { server, adminUrl: server.url, postgresUrl };
}

function asPostgres(url: string, password: string): string {
  const parsed = new URL(url);
  parsed.username = "postgres";
  parsed.password = password;
  return parsed.toString();
}
