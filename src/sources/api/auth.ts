/**
 * Who calls the `/v1` API: `Authorization: Bearer mr_<64 hex>`, the key's scopes, and whether the
 * account's tier includes API access. Unknown, revoked and expired keys are 401 and count against
 * the client address's failed-authentication bucket; a tier without `api_access` is 403.
 */
import type { Sql } from "postgres";

import type { Tier } from "../../reconciler/types.ts";
import { type ApiKeyRecord, touchApiKeys } from "../../state/api-keys.ts";
import { withDeadline } from "../../state/deadline.ts";
import { ApiError } from "./errors.ts";

export const API_SCOPES = ["instances:read", "instances:write", "backups:read", "backups:write", "usage:read", "support:write"] as const;
export type ApiScope = (typeof API_SCOPES)[number];

const KEY_FORMAT = /^mr_[0-9a-f]{64}$/;
/** The longest the batched last_used_at write may wait for the database. */
const LAST_USED_WRITE_MS = 5_000;

export interface Caller {
  readonly keyId: string;
  readonly accountId: string;
  readonly scopes: readonly string[];
  readonly tier: Exclude<Tier, "free">;
  /** What audit rows name: `api_key:<id>`. */
  readonly actor: string;
}

const unauthenticated = (code: string, message: string): ApiError => new ApiError(401, "authentication_error", code, message);

/** The bearer token of an Authorization header, or an ApiError saying what is wrong with it. */
export function bearerKey(header: string | undefined): string {
  if (!header) throw unauthenticated("api_key_missing", "No API key provided: send `Authorization: Bearer mr_...` (create a key with `mindroom-reconciler keys create`)");
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw unauthenticated("api_key_invalid", "The Authorization header must be `Bearer mr_...`");
  const key = match[1]!;
  if (!KEY_FORMAT.test(key)) throw unauthenticated("api_key_invalid", "Invalid API key: keys are `mr_` followed by 64 hex characters");
  return key;
}

/** The caller a key's record names, or the 401/403 that applies (`undefined`: no key has the hash). Pure. */
export function callerOf(record: ApiKeyRecord | undefined, now: Date): Caller {
  if (!record) throw unauthenticated("api_key_invalid", "Invalid API key provided: no such key");
  if (record.revokedAt) throw unauthenticated("api_key_revoked", `This API key was revoked at ${record.revokedAt.toISOString()}: create a new one`);
  if (record.expiresAt && record.expiresAt <= now) throw unauthenticated("api_key_expired", `This API key expired at ${record.expiresAt.toISOString()}: create a new one`);
  if (!record.apiAccess || record.tier === null || record.tier === "free") {
    const tier = record.tier ?? "no subscription";
    throw new ApiError(403, "permission_error", "tier_no_api_access", `API access is not included in your plan (${tier}): upgrade to starter or above`);
  }
  return { keyId: record.id, accountId: record.accountId, scopes: record.scopes, tier: record.tier, actor: `api_key:${record.id}` };
}

/** Throws 403 unless the caller holds `scope` (`read` grants every `:read` scope). */
export function requireScope(caller: Caller, scope: ApiScope): void {
  if (caller.scopes.includes(scope)) return;
  if (scope.endsWith(":read") && caller.scopes.includes("read")) return;
  throw new ApiError(403, "permission_error", "scope_missing", `This API key lacks the scope ${scope}: create a key with it`, { param: "scope" });
}

/**
 * Remembers which keys were used and writes `last_used_at` for all of them at most once per
 * interval, so a busy key costs no write per request.
 */
export class LastUsedBatcher {
  private used = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sql: Sql,
    private readonly intervalMs: number,
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  note(keyId: string): void {
    this.used.add(keyId);
  }

  async flush(): Promise<void> {
    if (this.used.size === 0) return;
    const ids = [...this.used];
    this.used = new Set();
    // Bounded: a frozen database must not hold up a shutdown (the keys are kept for the next try).
    await withDeadline(LAST_USED_WRITE_MS, "record API keys' last use", () => touchApiKeys(this.sql, ids, new Date())).catch((error: unknown) => {
      for (const id of ids) this.used.add(id);
      this.onError(error);
    });
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
