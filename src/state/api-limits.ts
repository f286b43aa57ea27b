/**
 * The API's state shared by every replica (migration 0014): token buckets for rate limits and
 * remembered idempotency keys.
 */
import type { Sql, TransactionSql } from "postgres";

export interface Bucket {
  /** `key:<api key id>` or `addr:<client address>`. */
  readonly name: string;
  readonly capacity: number;
  readonly refillPerSecond: number;
}

export interface TokenAnswer {
  readonly allowed: boolean;
  readonly remaining: number;
  /** Seconds until the bucket is full again. */
  readonly resetSeconds: number;
  /** Seconds until a request would be allowed. */
  readonly retryAfterSeconds: number;
}

/** Takes `cost` tokens (0 only looks). Atomic across replicas. */
export async function takeToken(sql: Sql, bucket: Bucket, cost = 1): Promise<TokenAnswer> {
  const [row] = await sql<{ allowed: boolean; remaining: number; reset_seconds: number; retry_after_seconds: number }[]>`
    select allowed, remaining, reset_seconds, retry_after_seconds
    from public.api_take_token(${bucket.name}, ${bucket.capacity}::int, ${bucket.refillPerSecond}::float8, ${cost}::int)`;
  return { allowed: row!.allowed, remaining: row!.remaining, resetSeconds: row!.reset_seconds, retryAfterSeconds: row!.retry_after_seconds };
}

/** How long an idempotency key is remembered (Stripe: 24 hours). */
export const IDEMPOTENCY_WINDOW_HOURS = 24;

export type IdempotencyClaim =
  | { readonly kind: "claimed" }
  | { readonly kind: "replay"; readonly statusCode: number; readonly body: unknown }
  | { readonly kind: "in_flight" }
  | { readonly kind: "mismatch" };

/**
 * A claim whose response was never recorded this long after it began was abandoned (its replica
 * died, or the database failed it): requests are bounded by DB_REQUEST_TIMEOUT, far below this.
 */
const ABANDONED_AFTER_SECONDS = 60;

/**
 * Claims `key` for this request, or answers what an earlier request with it did. A row older than
 * the window, or an abandoned claim, is replaced as if it had never been.
 */
export async function claimIdempotencyKey(sql: Sql, accountId: string, key: string, apiKeyId: string, fingerprint: string): Promise<IdempotencyClaim> {
  const [row] = await sql<{ fingerprint: string; status_code: number | null; response_body: unknown; claimed: boolean }[]>`
    insert into public.api_idempotency_keys as k (account_id, idempotency_key, api_key_id, fingerprint)
    values (${accountId}, ${key}, ${apiKeyId}, ${fingerprint})
    on conflict (account_id, idempotency_key) do update
      set api_key_id = excluded.api_key_id, fingerprint = excluded.fingerprint, status_code = null,
          response_body = null, created_at = now()
      where k.created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})
         or (k.status_code is null and k.created_at < now() - make_interval(secs => ${ABANDONED_AFTER_SECONDS}))
    returning fingerprint, status_code, response_body, true as claimed`;
  if (row) return { kind: "claimed" };
  const [existing] = await sql<{ fingerprint: string; status_code: number | null; response_body: unknown }[]>`
    select fingerprint, status_code, response_body from public.api_idempotency_keys
    where account_id = ${accountId} and idempotency_key = ${key}`;
  if (!existing) return claimIdempotencyKey(sql, accountId, key, apiKeyId, fingerprint);
  if (existing.fingerprint !== fingerprint) return { kind: "mismatch" };
  if (existing.status_code === null) return { kind: "in_flight" };
  return { kind: "replay", statusCode: existing.status_code, body: existing.response_body };
}

/** Stores the response of the request that claimed `key`. */
export async function completeIdempotencyKey(sql: Sql, accountId: string, key: string, statusCode: number, body: unknown): Promise<void> {
  await sql`
    update public.api_idempotency_keys set status_code = ${statusCode}, response_body = ${sql.json(body as never)}
    where account_id = ${accountId} and idempotency_key = ${key} and status_code is null`;
}

/** Forgets a claim whose request failed in a way a retry may not (a 5xx): the retry runs anew. */
export async function releaseIdempotencyKey(sql: Sql, accountId: string, key: string): Promise<void> {
  await sql`
    delete from public.api_idempotency_keys
    where account_id = ${accountId} and idempotency_key = ${key} and status_code is null`;
}

/** Deletes idempotency keys past the window and buckets idle for an hour (full again by then). */
export async function sweepApiState(sql: Sql | TransactionSql): Promise<{ keys: number; buckets: number }> {
  const keys = await sql`
    delete from public.api_idempotency_keys where created_at < now() - make_interval(hours => ${IDEMPOTENCY_WINDOW_HOURS})`;
  const buckets = await sql`delete from public.api_rate_buckets where updated_at < now() - interval '1 hour'`;
  return { keys: keys.count, buckets: buckets.count };
}
