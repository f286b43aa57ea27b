/**
 * One Postgres for the whole test run: TEST_DATABASE_URL (or DATABASE_URL) when given, else an
 * embedded Postgres in a temporary directory. A template database with every migration applied
 * is built once; each test file clones its own database from it (test/helpers/db.ts).
 *
 * Beside it, always embedded, a cluster shaped like a Supabase project (test/helpers/
 * supabase-project.ts), migrated as its non-superuser `postgres`, for the tests that must hold
 * on Supabase's roles and default privileges as well as on plain Postgres.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import type { TestProject } from "vitest/node";

import { connect, withDatabaseName } from "../src/state/db.ts";
import { openOwnEmbeddedDatabase } from "../src/state/embedded.ts";
import { migrate } from "../src/state/migrate.ts";
import { startSupabaseProject, SUPABASE_TEMPLATE_DATABASE } from "./helpers/supabase-project.ts";

export const TEMPLATE_DATABASE = "mindroom_test_template";

declare module "vitest" {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
    supabaseAdminUrl: string;
    supabasePostgresUrl: string;
    supabaseTemplate: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.TEST_DATABASE_URL ?? process.env.DATABASE_URL;
  const dir = external ? undefined : await mkdtemp(join(tmpdir(), "mindroom-test-pg-"));
  const supabaseDir = await mkdtemp(join(tmpdir(), "mindroom-test-supabase-"));
  const supabase = startSupabaseProject(supabaseDir);
  const server = dir ? await openOwnEmbeddedDatabase(dir, () => {}) : undefined;
  const adminUrl = external ?? server!.url;
  const admin = connect(adminUrl, { max: 1 });
  await admin.unsafe(`drop database if exists ${TEMPLATE_DATABASE} with (force)`);
  await admin.unsafe(`create database ${TEMPLATE_DATABASE}`);
  const template = connect(withDatabaseName(adminUrl, TEMPLATE_DATABASE), { max: 1 });
  try {
    await migrate(template);
  } finally {
    await template.end();
    await admin.end();
  }
  const shaped = await supabase;
  project.provide("pgAdminUrl", adminUrl);
  project.provide("pgTemplate", TEMPLATE_DATABASE);
  project.provide("supabaseAdminUrl", shaped.adminUrl);
  project.provide("supabasePostgresUrl", shaped.postgresUrl);
  project.provide("supabaseTemplate", SUPABASE_TEMPLATE_DATABASE);
  return async () => {
    await Promise.all([server?.stop(), shaped.server.stop()]);
    await Promise.all([dir ? rm(dir, { recursive: true, force: true }) : undefined, rm(supabaseDir, { recursive: true, force: true })]);
  };
}
