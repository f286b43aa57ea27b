/**
 * Restore bookkeeping in `instance_restores` (migration 0009). SQL only. A restore is requested by
 * inserting a row (the CLI, later the API); the leader's pass of the target instance works it.
 */
import type { Sql } from "postgres";

import type { Component, RestoreRequest } from "../reconciler/types.ts";
import type { Db } from "./sql.ts";


export interface RestoreRow extends RestoreRequest {
  readonly instanceId: string;
  readonly status: "requested" | "in_progress" | "completed" | "failed";
  readonly error: string | null;
  readonly requestedBy: string;
}

interface Row {
  id: string;
  backup_id: string;
  instance_id: string;
  component: Component;
  safety_backup_id: string | null;
  safety_completed: boolean;
  replaced: boolean;
  status: RestoreRow["status"];
  error: string | null;
  requested_by: string;
}

const COLUMNS = (sql: Db) => sql`
  r.id, r.backup_id, r.instance_id, b.component, r.safety_backup_id, r.status, r.error, r.requested_by,
  r.replaced_at is not null as replaced,
  coalesce((select s.status = 'completed' from public.instance_backups s where s.id = r.safety_backup_id), false) as safety_completed`;

function toRestore(row: Row): RestoreRow {
  return {
    id: row.id,
    backupId: row.backup_id,
    instanceId: row.instance_id,
    component: row.component,
    safetyBackupId: row.safety_backup_id,
    safetyCompleted: row.safety_completed,
    replaced: row.replaced,
    status: row.status,
    error: row.error,
    requestedBy: row.requested_by,
  };
}

/** The restore to work on for an instance: one in progress first, then the oldest requested. */
export async function nextRestore(sql: Db, instanceId: string): Promise<RestoreRow | undefined> {
  const [row] = await sql<Row[]>`
    select ${COLUMNS(sql)}
    from public.instance_restores r join public.instance_backups b on b.id = r.backup_id
    where r.instance_id = ${instanceId} and r.status in ('in_progress', 'requested')
    order by (r.status = 'in_progress') desc, r.created_at, r.id limit 1`;
  return row ? toRestore(row) : undefined;
}

export async function findRestore(sql: Db, id: string): Promise<RestoreRow | undefined> {
  const [row] = await sql<Row[]>`
    select ${COLUMNS(sql)}
    from public.instance_restores r join public.instance_backups b on b.id = r.backup_id
    where r.id = ${id}`;
  return row ? toRestore(row) : undefined;
}

/** Inserts a requested restore of `backupId` into `instanceId`; returns its id. */
export async function requestRestore(sql: Db, backupId: string, instanceId: string, requestedBy: string): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.instance_restores (backup_id, instance_id, requested_by)
    values (${backupId}, ${instanceId}, ${requestedBy}) returning id`;
  return row!.id;
}

export async function markReplaced(sql: Db, id: string): Promise<void> {
  await sql`update public.instance_restores set replaced_at = coalesce(replaced_at, now()) where id = ${id}`;
}

export async function markRestoreStarted(sql: Db, id: string, safetyBackupId: string): Promise<void> {
  await sql`
    update public.instance_restores set status = 'in_progress', safety_backup_id = ${safetyBackupId}, started_at = coalesce(started_at, now())
    where id = ${id}`;
}

/** Completed (error null) or failed; audited on the target instance either way. */
export async function markRestoreFinished(sql: Sql, id: string, error: string | null): Promise<void> {
  await sql.begin(async (tx) => {
    const [row] = await tx<{ instance_id: string; account_id: string; backup_id: string; safety_backup_id: string | null; requested_by: string }[]>`
      update public.instance_restores r set status = ${error === null ? "completed" : "failed"}, error = ${error}, completed_at = now()
      from public.instances i where r.id = ${id} and i.id = r.instance_id
      returning r.instance_id, i.account_id, r.backup_id, r.safety_backup_id, r.requested_by`;
    if (!row) return;
    const details = { restore_id: id, backup_id: row.backup_id, safety_backup_id: row.safety_backup_id, requested_by: row.requested_by, ...(error ? { error } : {}) };
    await tx`
      insert into public.audit_logs (account_id, instance_id, action, action_category, details, actor, success, error_message)
      values (${row.account_id}, ${row.instance_id}, ${error === null ? "instance_restored" : "instance_restore_failed"}, 'backup',
              ${tx.json(details)}, 'controller', ${error === null}, ${error})`;
  });
}
