/**
 * The notifications outbox as an at-least-once queue (migration 0012).
 *
 * States: pending (`sent_at` and `failed_at` null) → claimed (`claimed_until` in the future) →
 * sent | pending again at `next_attempt_at` | failed. A claim is a short transaction
 * (FOR UPDATE SKIP LOCKED, so replicas never claim one row twice at once); no lock is held while
 * the SMTP server is talking. A claim that lapses without a record (the process died) makes the
 * row due again, and the resend carries the same Message-ID, so receivers can drop the copy.
 */
import type { Sql } from "postgres";

/** A claimed notification with what its message is rendered from (rows as they are now). */
export interface ClaimedNotification {
  readonly id: string;
  readonly kind: string;
  readonly recipient: string;
  /** The subject and text the producer stored: the fallback for kinds without a template. */
  readonly subject: string;
  readonly body: string;
  readonly payload: Readonly<Record<string, unknown>>;
  /** Attempts including this one. */
  readonly attempts: number;
  readonly accountName: string | null;
  readonly instance: {
    readonly subdomain: string;
    readonly frontendUrl: string | null;
    readonly backendUrl: string | null;
    readonly matrixUrl: string | null;
  } | null;
  /** The instance's newest completed backup (the cancellation notice's final backup). */
  readonly finalBackup: { readonly id: string; readonly expiresAt: Date | null } | null;
}

type ClaimRow = {
  id: string;
  kind: string;
  recipient: string;
  subject: string;
  body: string;
  payload: Record<string, unknown>;
  attempts: number;
  full_name: string | null;
  subdomain: string | null;
  frontend_url: string | null;
  backend_url: string | null;
  matrix_url: string | null;
  backup_id: string | null;
  backup_expires_at: Date | null;
};

/** Claims up to `limit` due notifications for `leaseMs`, oldest due first. */
export async function claimDue(sql: Sql, limit: number, leaseMs: number): Promise<ClaimedNotification[]> {
  const rows = await sql<ClaimRow[]>`
    with claimed as (
      update public.notifications
         set claimed_until = now() + ${leaseMs} * interval '1 millisecond', attempts = attempts + 1
       where id in (select id from public.notifications
                     where sent_at is null and failed_at is null and next_attempt_at <= now()
                       and (claimed_until is null or claimed_until <= now())
                     order by next_attempt_at, id
                     limit ${limit}
                     for update skip locked)
      returning id, kind, recipient, subject, body, payload, attempts, account_id, instance_id
    )
    select c.id::text as id, c.kind, c.recipient, c.subject, c.body, c.payload, c.attempts,
           a.full_name, i.subdomain, i.frontend_url, i.backend_url, i.matrix_url,
           b.id::text as backup_id, b.expires_at as backup_expires_at
      from claimed c
      left join public.accounts a on a.id = c.account_id
      left join public.instances i on i.id = c.instance_id
      left join lateral (select ib.id, ib.expires_at from public.instance_backups ib
                          where ib.instance_id = c.instance_id and ib.status = 'completed'
                          order by ib.completed_at desc nulls last limit 1) b on true
     order by c.id`;
  return rows.map(toClaimed);
}

function toClaimed(row: ClaimRow): ClaimedNotification {
  return {
    id: row.id,
    kind: row.kind,
    recipient: row.recipient,
    subject: row.subject,
    body: row.body,
    payload: row.payload,
    attempts: row.attempts,
    accountName: row.full_name,
    instance: row.subdomain === null ? null : { subdomain: row.subdomain, frontendUrl: row.frontend_url, backendUrl: row.backend_url, matrixUrl: row.matrix_url },
    finalBackup: row.backup_id === null ? null : { id: row.backup_id, expiresAt: row.backup_expires_at },
  };
}

/** Records acceptance by the server (or by the log). Idempotent. */
export async function markSent(sql: Sql, id: string): Promise<void> {
  await sql`
    update public.notifications set sent_at = now(), claimed_until = null, last_error = null
     where id = ${id} and sent_at is null`;
}

/** Makes the notification due again after `delayMs`, remembering why (no secrets in `error`). */
export async function markRetry(sql: Sql, id: string, delayMs: number, error: string): Promise<void> {
  await sql`
    update public.notifications
       set next_attempt_at = now() + ${delayMs} * interval '1 millisecond', claimed_until = null, last_error = ${error}
     where id = ${id} and sent_at is null`;
}

/** Gives up on the notification: it stays visible in `status` until it ages out. */
export async function markFailed(sql: Sql, id: string, error: string): Promise<void> {
  await sql`
    update public.notifications set failed_at = now(), claimed_until = null, last_error = ${error}
     where id = ${id} and sent_at is null`;
}

export interface OutboxSummary {
  readonly pending: number;
  readonly failed: number;
  /** Age of the oldest pending notification, in seconds; null when none is pending. */
  readonly oldestPendingSeconds: number | null;
  /** The newest failure's kind and error, for `status`. */
  readonly lastFailure: { readonly id: string; readonly kind: string; readonly error: string | null } | null;
}

/** What `status` and the pending gauge show; failures count over the last 7 days. */
export async function outboxSummary(sql: Sql): Promise<OutboxSummary> {
  const [counts] = await sql<{ pending: number; failed: number; oldest: number | null }[]>`
    select count(*) filter (where sent_at is null and failed_at is null)::int as pending,
           count(*) filter (where failed_at > now() - interval '7 days')::int as failed,
           extract(epoch from now() - min(created_at) filter (where sent_at is null and failed_at is null))::float8 as oldest
      from public.notifications`;
  const [last] = await sql<{ id: string; kind: string; last_error: string | null }[]>`
    select id::text as id, kind, last_error from public.notifications
     where failed_at > now() - interval '7 days' order by failed_at desc limit 1`;
  return {
    pending: counts?.pending ?? 0,
    failed: counts?.failed ?? 0,
    oldestPendingSeconds: counts?.oldest ?? null,
    lastFailure: last ? { id: last.id, kind: last.kind, error: last.last_error } : null,
  };
}
