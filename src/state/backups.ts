/**
 * Backup and restore bookkeeping in `instance_backups` and `instance_restores` (migrations 0002,
 * 0009). SQL only: the bytes go through the backup store (src/drivers/backup-store/), wired in
 * src/runtime/backups.ts.
 *
 * Contracts:
 * - A row is `completed` only with its location, size, sha256 and key id: a partial upload never
 *   looks like a backup.
 * - `claimRequested` is called by the leader's pass of one instance (never two at once for one
 *   instance), so any `in_progress` row it finds was left by a pass that died: manual and
 *   automatic ones are taken again, safety and teardown ones are failed (their flows begin anew).
 */
import type { Sql, TransactionSql } from "postgres";

import type { BackupRecord, BackupType, Component, Tier } from "../reconciler/types.ts";
import type { Db } from "./sql.ts";


export interface BackupRow {
  readonly id: string;
  readonly instanceId: string;
  readonly accountId: string;
  readonly subdomain: string;
  readonly component: Component | null;
  readonly type: BackupType;
  readonly status: "requested" | "in_progress" | "completed" | "failed" | "expired";
  readonly location: string | null;
  readonly sizeBytes: number | null;
  readonly sha256: string | null;
  readonly keyId: string | null;
  readonly error: string | null;
  readonly createdAt: Date;
  readonly completedAt: Date | null;
  readonly expiresAt: Date | null;
  readonly verifiedAt: Date | null;
}

export interface StoredArchive {
  readonly location: string;
  readonly sizeBytes: number;
  readonly sha256: string;
  readonly keyId: string;
}

const SELECT_COLUMNS = (sql: Db) => sql`
  b.id, b.instance_id, i.account_id, i.subdomain, b.component, b.backup_type, b.status, b.location,
  b.size_bytes::text as size_bytes, b.sha256, b.key_id, b.error, b.created_at, b.completed_at,
  b.expires_at, b.verified_at`;

interface Row {
  id: string;
  instance_id: string;
  account_id: string;
  subdomain: string;
  component: Component | null;
  backup_type: BackupType;
  status: BackupRow["status"];
  location: string | null;
  size_bytes: string | null;
  sha256: string | null;
  key_id: string | null;
  error: string | null;
  created_at: Date;
  completed_at: Date | null;
  expires_at: Date | null;
  verified_at: Date | null;
}

function toBackup(row: Row): BackupRow {
  return {
    id: row.id,
    instanceId: row.instance_id,
    accountId: row.account_id,
    subdomain: row.subdomain,
    component: row.component,
    type: row.backup_type,
    status: row.status,
    location: row.location,
    sizeBytes: row.size_bytes === null ? null : Number(row.size_bytes),
    sha256: row.sha256,
    keyId: row.key_id,
    error: row.error,
    createdAt: row.created_at,
    completedAt: row.completed_at,
    expiresAt: row.expires_at,
    verifiedAt: row.verified_at,
  };
}

/** A new `in_progress` row (teardown, safety and import backups start here, not as requests). */
export async function beginBackup(sql: Db, instanceId: string, component: Component, type: BackupType, retentionMs: number): Promise<BackupRecord> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.instance_backups (instance_id, backup_type, status, component, started_at, expires_at)
    values (${instanceId}, ${type}, 'in_progress', ${component}, now(), now() + ${retentionMs} * interval '1 millisecond')
    returning id`;
  return { id: row!.id, component, type };
}

export async function completeBackup(sql: Db, id: string, stored: StoredArchive): Promise<void> {
  await sql`
    update public.instance_backups
    set status = 'completed', location = ${stored.location}, size_bytes = ${stored.sizeBytes}, sha256 = ${stored.sha256},
        key_id = ${stored.keyId}, completed_at = now(), error = null
    where id = ${id}`;
}

export async function failBackup(sql: Db, id: string, error: string): Promise<void> {
  await sql`update public.instance_backups set status = 'failed', error = ${error.slice(0, 2000)}, completed_at = now() where id = ${id}`;
}

export async function completedTeardownBackups(sql: Db, instanceId: string, since: Date | null): Promise<Set<Component>> {
  const rows = await sql<{ component: Component }[]>`
    select distinct component from public.instance_backups
    where instance_id = ${instanceId} and backup_type = 'pre_deprovision' and status = 'completed'
      and component is not null and (${since}::timestamptz is null or completed_at >= ${since})`;
  return new Set(rows.map((row) => row.component));
}

export interface ClaimOptions {
  /** Components of the instance that have storage (what a backup can contain). */
  readonly components: readonly Component[];
  /** At most this many manual requests per instance per 24 hours; later ones fail. */
  readonly manualPerDay: number;
  readonly retentionMs: number;
}

/**
 * The requested (and interrupted) manual and automatic backups of an instance, now `in_progress`
 * and one per component. Requests over the manual limit or for a component without storage are
 * failed with the reason. Interrupted safety/teardown backups are failed.
 */
export async function claimRequested(sql: Sql, instanceId: string, options: ClaimOptions): Promise<BackupRecord[]> {
  return sql.begin(async (tx) => {
    await tx`
      update public.instance_backups set status = 'failed', error = 'interrupted: the controller stopped during this backup', completed_at = now()
      where instance_id = ${instanceId} and status = 'in_progress' and backup_type in ('pre_deprovision', 'pre_restore', 'import')`;
    const rows = await tx<{ id: string; component: Component | null; backup_type: BackupType; over_limit: boolean }[]>`
      select b.id, b.component, b.backup_type,
             b.backup_type = 'manual' and b.request_id is null and (
               select count(*) from public.instance_backups o
               where o.instance_id = b.instance_id and o.backup_type = 'manual' and o.request_id is null
                 and o.created_at > b.created_at - interval '1 day' and (o.created_at, o.id) <= (b.created_at, b.id)
                 and coalesce(o.error, '') not like 'manual backup limit%'
             ) > ${options.manualPerDay} as over_limit
      from public.instance_backups b
      where b.instance_id = ${instanceId} and b.status in ('requested', 'in_progress')
        and b.backup_type in ('manual', 'automatic')
      order by b.created_at, b.id
      for update of b`;
    const claimed: BackupRecord[] = [];
    for (const row of rows) claimed.push(...(await claimOne(tx, row, options)));
    return claimed;
  });
}

async function claimOne(
  tx: TransactionSql,
  row: { id: string; component: Component | null; backup_type: BackupType; over_limit: boolean },
  options: ClaimOptions,
): Promise<BackupRecord[]> {
  if (row.over_limit) {
    await failBackup(tx, row.id, `manual backup limit reached: at most ${options.manualPerDay} per instance per day`);
    return [];
  }
  if (row.component !== null && !options.components.includes(row.component)) {
    await failBackup(tx, row.id, `component ${row.component} has no storage to back up`);
    return [];
  }
  const components = row.component !== null ? [row.component] : options.components;
  const [first, ...rest] = components;
  if (first === undefined) {
    await failBackup(tx, row.id, "this instance has no storage to back up");
    return [];
  }
  await tx`
    update public.instance_backups
    set status = 'in_progress', component = ${first}, started_at = now(), error = null,
        expires_at = coalesce(expires_at, now() + ${options.retentionMs} * interval '1 millisecond')
    where id = ${row.id}`;
  const records: BackupRecord[] = [{ id: row.id, component: first, type: row.backup_type }];
  for (const component of rest) {
    const [extra] = await tx<{ id: string }[]>`
      insert into public.instance_backups (instance_id, backup_type, status, component, request_id, started_at, expires_at)
      select instance_id, backup_type, 'in_progress', ${component}, id, now(), expires_at from public.instance_backups where id = ${row.id}
      returning id`;
    records.push({ id: extra!.id, component, type: row.backup_type });
  }
  return records;
}

export async function findBackup(sql: Db, id: string): Promise<BackupRow | undefined> {
  const [row] = await sql<Row[]>`
    select ${SELECT_COLUMNS(sql)} from public.instance_backups b join public.instances i on i.id = b.instance_id
    where b.id = ${id}`;
  return row ? toBackup(row) : undefined;
}

/** Backups, newest first: of one instance, or of every instance. */
export async function listBackups(sql: Db, instanceId: string | null, limit = 500): Promise<BackupRow[]> {
  const rows = await sql<Row[]>`
    select ${SELECT_COLUMNS(sql)} from public.instance_backups b join public.instances i on i.id = b.instance_id
    where ${instanceId}::uuid is null or b.instance_id = ${instanceId}
    order by b.created_at desc, b.id limit ${limit}`;
  return rows.map(toBackup);
}

/** The backups of a request (the row itself and its per-component expansions). */
export async function backupsOfRequest(sql: Db, requestId: string): Promise<BackupRow[]> {
  const rows = await sql<Row[]>`
    select ${SELECT_COLUMNS(sql)} from public.instance_backups b join public.instances i on i.id = b.instance_id
    where b.id = ${requestId} or b.request_id = ${requestId} order by b.component`;
  return rows.map(toBackup);
}

/** Inserts a manual request for an instance (id or subdomain); returns its id. */
export async function requestBackup(sql: Db, instanceId: string, component: Component | null): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.instance_backups (instance_id, backup_type, status, component)
    values (${instanceId}, 'manual', 'requested', ${component}) returning id`;
  return row!.id;
}

/** Completed backups whose expiry has passed, oldest first. */
export async function expiredBackups(sql: Db, now: Date, limit: number): Promise<BackupRow[]> {
  const rows = await sql<Row[]>`
    select ${SELECT_COLUMNS(sql)} from public.instance_backups b join public.instances i on i.id = b.instance_id
    where b.status = 'completed' and b.expires_at < ${now}
    order by b.expires_at, b.id limit ${limit}`;
  return rows.map(toBackup);
}

/** Called after the object is deleted: only a completed row becomes expired. */
export async function markExpired(sql: Db, id: string): Promise<void> {
  await sql`update public.instance_backups set status = 'expired' where id = ${id} and status = 'completed'`;
}

export async function markVerified(sql: Db, id: string, at: Date): Promise<void> {
  await sql`update public.instance_backups set verified_at = ${at} where id = ${id}`;
}

/** A random sample of completed backups for the weekly verification. */
export async function sampleCompleted(sql: Db, count: number): Promise<BackupRow[]> {
  const rows = await sql<Row[]>`
    select ${SELECT_COLUMNS(sql)} from public.instance_backups b join public.instances i on i.id = b.instance_id
    where b.status = 'completed' order by random() limit ${count}`;
  return rows.map(toBackup);
}

/** What the daily schedule needs of every live paid-or-free instance (the policy filters tiers). */
export interface ScheduleRow {
  readonly instanceId: string;
  readonly tier: Tier;
  readonly lastAutomaticAt: Date | null;
  /** Creation times of failed automatic backups in the last two days. */
  readonly failedAt: readonly Date[];
}

export async function scheduleRows(sql: Db): Promise<ScheduleRow[]> {
  const rows = await sql<{ id: string; tier: ScheduleRow["tier"]; last_automatic_at: Date | null; failed_at: Date[] | null }[]>`
    select i.id, s.tier,
           (select max(b.created_at) from public.instance_backups b
             where b.instance_id = i.id and b.backup_type = 'automatic' and b.request_id is null and b.status <> 'failed') as last_automatic_at,
           (select array_agg(b.created_at) from public.instance_backups b
             where b.instance_id = i.id and b.backup_type = 'automatic' and b.request_id is null and b.status = 'failed'
               and b.created_at > now() - interval '2 days') as failed_at
    from public.instances i join public.subscriptions s on s.id = i.subscription_id
    where i.status <> 'deprovisioned' and i.host_id is not null and i.desired_state is distinct from 'deprovisioned'`;
  return rows.map((row) => ({ instanceId: row.id, tier: row.tier, lastAutomaticAt: row.last_automatic_at, failedAt: row.failed_at ?? [] }));
}

/**
 * Requests the automatic backup of `slot` (as of `now`), unless one since the slot exists already (another
 * replica that led a moment ago, or an earlier check). True when a row was inserted.
 */
export async function requestAutomaticBackup(sql: Db, instanceId: string, slot: Date, now: Date, retentionMs: number): Promise<boolean> {
  // created_at is the scheduler's clock, the one the slot was computed on.
  const inserted = await sql`
    insert into public.instance_backups (instance_id, backup_type, status, created_at, expires_at)
    select ${instanceId}, 'automatic', 'requested', ${now}, ${now}::timestamptz + ${retentionMs} * interval '1 millisecond'
    where not exists (
      select 1 from public.instance_backups b
      where b.instance_id = ${instanceId} and b.backup_type = 'automatic' and b.request_id is null
        and b.status <> 'failed' and b.created_at >= ${slot})`;
  return inserted.count === 1;
}

/** Tells the operator (ALERT_EMAIL) once per UTC day that `count` instances are overdue. */
export async function queueOverdueAlert(sql: Db, count: number, day: string): Promise<void> {
  await sql`
    select public.queue_notification(null, null, 'operator_alert', ${`operator:backups_overdue:${day}`}, 'operator',
      ${`MindRoom: ${count} paid instance(s) have no backup in 26 hours`},
      ${`${count} live paid instance(s) have no completed backup in the last 26 hours.

See \`mindroom-reconciler backups list\` and the runbook entry "A backup is overdue".`},
      ${sql.json({ count })})`;
}

/** Live paid instances with no completed backup in the last 26 hours (the overdue gauge). */
export async function overdueBackups(sql: Db): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(*)::int as n
    from public.instances i join public.subscriptions s on s.id = i.subscription_id
    where s.tier <> 'free' and i.status in ('running', 'stopped') and i.created_at < now() - interval '26 hours'
      and not exists (select 1 from public.instance_backups b
                      where b.instance_id = i.id and b.status = 'completed' and b.completed_at > now() - interval '26 hours')`;
  return row?.n ?? 0;
}
