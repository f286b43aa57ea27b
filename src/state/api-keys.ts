/**
 * API keys (migrations 0002, 0008): looked up by the sha256 of the presented key, created and
 * revoked only through their SQL functions (which check scopes, quotas and audit), and their
 * `last_used_at` written in batches, never once per request.
 */
import { createHash } from "node:crypto";

import type { Sql } from "postgres";

import type { Tier } from "../reconciler/types.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Hex sha256 of a key, as `api_keys.key_hash` stores it. */
export function apiKeyHash(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A presented key's row and what its account's plan allows. */
export interface ApiKeyRecord {
  readonly id: string;
  readonly accountId: string;
  readonly scopes: readonly string[];
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  /**
   * The account's plan: the highest tier among its live subscriptions (trialing, active,
   * past_due), else among the others (a canceled subscription keeps API access to its
   * instance's status and backups through the retention period), or null without any.
   */
  readonly tier: Tier | null;
  /** That subscription's `features.api_access`. */
  readonly apiAccess: boolean;
}

export interface TokenState {
  readonly allowed: boolean;
  readonly remaining: number;
  readonly resetSeconds: number;
  readonly retryAfterSeconds: number;
}

/** What `api_guard` (migration 0014) answers for one request. */
export interface GuardAnswer {
  /** The client address's failed-authentication bucket, looked at only. */
  readonly address: Omit<TokenState, "allowed">;
  /** The key, unless the address was over its limit or no key has this hash. */
  readonly key: ApiKeyRecord | undefined;
  /** The token taken from the key's bucket, when the key is one the API accepts. */
  readonly token: TokenState | undefined;
}

export interface GuardRequest {
  readonly key: string;
  /** Bucket name of the client address's failed authentications. */
  readonly addressBucket: string;
  readonly failedPerMinute: number;
  /** Requests per minute by tier; a tier missing here gets no token. */
  readonly limits: Readonly<Record<string, number>>;
}

type GuardRow = {
  address_remaining: number; address_retry_after_seconds: number; address_reset_seconds: number;
  key_id: string | null; account_id: string; permissions: string[]; expires_at: Date | null; revoked_at: Date | null; tier: Tier | null; api_access: boolean;
  allowed: boolean | null; remaining: number; reset_seconds: number; retry_after_seconds: number;
};

/** The address check, the key with its plan, and the key's token, in one round trip. */
export async function guardApiRequest(sql: Sql, request: GuardRequest): Promise<GuardAnswer> {
  const [row] = await sql<GuardRow[]>`
    select * from public.api_guard(${apiKeyHash(request.key)}, ${request.addressBucket}, ${request.failedPerMinute}::int, ${sql.json(request.limits)})`;
  const r = row!;
  const key: ApiKeyRecord | undefined = r.key_id === null ? undefined : {
    id: r.key_id,
    accountId: r.account_id,
    scopes: r.permissions,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    tier: r.tier,
    apiAccess: r.api_access,
  };
  return {
    address: { remaining: r.address_remaining, resetSeconds: r.address_reset_seconds, retryAfterSeconds: r.address_retry_after_seconds },
    key,
    token: r.allowed === null ? undefined : { allowed: r.allowed, remaining: r.remaining, resetSeconds: r.reset_seconds, retryAfterSeconds: r.retry_after_seconds },
  };
}

/** Records that these keys were used at `at` (one statement for the whole batch). */
export async function touchApiKeys(sql: Sql, ids: readonly string[], at: Date): Promise<void> {
  if (ids.length === 0) return;
  await sql`
    update public.api_keys set last_used_at = greatest(last_used_at, ${at})
    where id = any(${sql.array([...ids])}::uuid[]) and is_active`;
}

export interface CreatedApiKey {
  readonly id: string;
  /** The key in plain text: shown once, never stored. */
  readonly key: string;
  readonly prefix: string;
  readonly scopes: readonly string[];
}

export async function createApiKey(sql: Sql, accountId: string, name: string, scopes: readonly string[], expiresAt: Date | null): Promise<CreatedApiKey> {
  const [row] = await sql<{ id: string; api_key: string; key_prefix: string }[]>`
    select id, api_key, key_prefix
    from public.create_api_key(${accountId}::uuid, ${name}, ${sql.array([...scopes])}::text[], ${expiresAt})`;
  const [stored] = await sql<{ permissions: string[] }[]>`select permissions from public.api_keys where id = ${row!.id}`;
  return { id: row!.id, key: row!.api_key, prefix: row!.key_prefix, scopes: stored!.permissions };
}

export interface ApiKeySummary {
  readonly id: string;
  readonly name: string;
  readonly prefix: string;
  readonly scopes: readonly string[];
  readonly createdAt: Date;
  readonly lastUsedAt: Date | null;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
}

export async function listApiKeys(sql: Sql, accountId: string): Promise<ApiKeySummary[]> {
  const rows = await sql<{ id: string; name: string; key_prefix: string; permissions: string[]; created_at: Date; last_used_at: Date | null; expires_at: Date | null; revoked_at: Date | null }[]>`
    select id, name, key_prefix, permissions, created_at, last_used_at, expires_at, revoked_at
    from public.api_keys where account_id = ${accountId} order by created_at, id`;
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    prefix: row.key_prefix,
    scopes: row.permissions,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  }));
}

/** True when this call revoked the key, false when it was revoked already; throws for an unknown id. */
export async function revokeApiKey(sql: Sql, keyId: string, actor: string): Promise<boolean> {
  if (!UUID.test(keyId)) throw new Error(`unknown API key ${keyId}: key ids are uuids (see \`keys list\`)`);
  return sql.begin(async (tx) => {
    await tx`select set_config('mindroom.actor', ${actor}, true)`;
    const [row] = await tx<{ revoked: boolean }[]>`select public.revoke_api_key(${keyId}::uuid) as revoked`;
    return row!.revoked;
  });
}

/** An account by id or email (case-insensitive), or undefined. */
export async function findAccount(sql: Sql, idOrEmail: string): Promise<{ id: string; email: string } | undefined> {
  const id = UUID.test(idOrEmail) ? idOrEmail : null;
  const [row] = await sql<{ id: string; email: string }[]>`
    select id, email from public.accounts where id = ${id}::uuid or lower(email) = lower(${idOrEmail}) limit 1`;
  return row;
}
