/**
 * Shared fixtures of the SQL tests: the seed's fixed ids, a way to run statements as a Supabase
 * API role with JWT claims set exactly as PostgREST sets them, and error-code capture.
 */
import type { Sql, TransactionSql } from "postgres";

export { seed } from "../../src/state/db.ts";

/** Ids fixed by migrations/seed.sql (last digit: 1 free, 2 starter, 3 professional, 4 enterprise). */
export const SEED = {
  account: { free: "a0000000-0000-4000-8000-000000000001", starter: "a0000000-0000-4000-8000-000000000002", pro: "a0000000-0000-4000-8000-000000000003", enterprise: "a0000000-0000-4000-8000-000000000004" },
  subscription: { free: "b0000000-0000-4000-8000-000000000001", starter: "b0000000-0000-4000-8000-000000000002", pro: "b0000000-0000-4000-8000-000000000003", enterprise: "b0000000-0000-4000-8000-000000000004" },
  instance: { free: "c0000000-0000-4000-8000-000000000001", starter: "c0000000-0000-4000-8000-000000000002", pro: "c0000000-0000-4000-8000-000000000003", enterprise: "c0000000-0000-4000-8000-000000000004" },
} as const;

export type ApiRole = "anon" | "authenticated" | "service_role";

/**
 * Runs `fn` in a transaction as `role` with `request.jwt.claims` set the way PostgREST does
 * (`set local role`, claims as JSON). The transaction commits when `fn` resolves.
 */
export async function asRole<T>(sql: Sql, role: ApiRole, sub: string | null, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  const claims = JSON.stringify(sub === null ? { role } : { sub, role });
  const result = await sql.begin(async (tx) => {
    // The role is one of three literals, never input.
    await tx.unsafe(`set local role ${role}`);
    await tx`select set_config('request.jwt.claims', ${claims}, true)`;
    return [await fn(tx)] as const;
  });
  return result[0];
}

/** The SQLSTATE a promise rejects with, or "ok" when it resolves. */
export async function sqlState(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return "ok";
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === "string" ? code : `not a Postgres error: ${String(error)}`;
  }
}

/** Row count of a table as the superuser, optionally filtered by a trusted SQL predicate. */
export async function countRows(sql: Sql | TransactionSql, table: string, where = "true"): Promise<number> {
  const [row] = await sql.unsafe<{ n: number }[]>(`select count(*)::int as n from public.${table} where ${where}`);
  return row?.n ?? -1;
}

export const SQLSTATE = {
  insufficientPrivilege: "42501",
  noDataFound: "P0002",
  nullValueNotAllowed: "22004",
  invalidParameterValue: "22023",
  uniqueViolation: "23505",
  checkViolation: "23514",
  notInPrerequisiteState: "55000",
  lockNotAvailable: "55P03",
  staleLeader: "MR001",
} as const;

export interface Customer {
  readonly accountId: string;
  readonly subscriptionId: string;
}

/** A new signed-up user (auth.users → accounts by trigger) with one subscription. */
export async function createCustomer(
  sql: Sql | TransactionSql,
  options: { tier?: "free" | "starter" | "professional" | "enterprise"; status?: string } = {},
): Promise<Customer> {
  const [user] = await sql<{ id: string }[]>`
    insert into auth.users (email, email_confirmed_at) values (${`u-${crypto.randomUUID()}@example.com`}, now()) returning id`;
  const accountId = user!.id;
  const [sub] = await sql<{ id: string }[]>`
    insert into subscriptions (account_id, tier, status)
    values (${accountId}, ${options.tier ?? "free"}, ${options.status ?? "active"}) returning id`;
  return { accountId, subscriptionId: sub!.id };
}

/** A customer with a live instance inserted directly (status as given, default running). */
export async function createInstance(
  sql: Sql | TransactionSql,
  options: { tier?: "free" | "starter" | "professional" | "enterprise"; status?: string } = {},
): Promise<Customer & { instanceId: string }> {
  const customer = await createCustomer(sql, { tier: options.tier ?? "free" });
  const subdomain = `t${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const [instance] = await sql<{ id: string }[]>`
    insert into instances (subscription_id, subdomain, status)
    values (${customer.subscriptionId}, ${subdomain}, ${options.status ?? "running"}) returning id`;
  return { ...customer, instanceId: instance!.id };
}
