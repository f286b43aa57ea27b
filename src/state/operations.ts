/**
 * The intent journal (`instance_operations`). Every write carries the leader's epoch; the fence
 * trigger (migration 0003) refuses a stale one, so a deposed leader cannot record, and therefore
 * cannot run, another action.
 */
import type { Sql } from "postgres";

import type { Journal } from "../reconciler/types.ts";

/**
 * Actions whose truth lives in their own records (instance_backups, instance_restores) rather than
 * on the host: an unknown outcome of one is always superseded by the work those records resume.
 */
const ARCHIVE_ACTIONS = ["backup", "restore"] as const;

export function createJournal(sql: Sql): Journal {
  return {
    begin: async (entry) => {
      const [row] = await sql<{ id: string }[]>`
        insert into public.instance_operations (instance_id, action, target, params_hash, epoch, attempt)
        values (${entry.instanceId}, ${entry.action}, ${entry.target}, ${entry.paramsHash}, ${entry.epoch},
          1 + (select count(*) from public.instance_operations o
               where o.instance_id = ${entry.instanceId} and o.action = ${entry.action}
                 and o.target = ${entry.target} and o.params_hash = ${entry.paramsHash} and o.status <> 'succeeded'))
        returning id`;
      return Number(row!.id);
    },
    advance: async (succeededId, entry) => {
      // One statement: both writes see the same snapshot, so the attempt count leaves out the
      // row being finished here.
      const [row] = await sql<{ id: string }[]>`
        with done as (
          update public.instance_operations
          set status = 'succeeded', finished_at = now(), error = null, epoch = ${entry.epoch}
          where id = ${succeededId})
        insert into public.instance_operations (instance_id, action, target, params_hash, epoch, attempt)
        values (${entry.instanceId}, ${entry.action}, ${entry.target}, ${entry.paramsHash}, ${entry.epoch},
          1 + (select count(*) from public.instance_operations o
               where o.instance_id = ${entry.instanceId} and o.action = ${entry.action} and o.id <> ${succeededId}
                 and o.target = ${entry.target} and o.params_hash = ${entry.paramsHash} and o.status <> 'succeeded'))
        returning id`;
      return Number(row!.id);
    },
    finish: async (id, outcome, error, epoch) => {
      await sql`
        update public.instance_operations
        set status = ${outcome}, finished_at = now(), error = ${error}, epoch = ${epoch}
        where id = ${id}`;
    },
    recoverPending: async (instanceId, epoch) => {
      await sql`
        update public.instance_operations
        set status = 'unknown', finished_at = now(), epoch = ${epoch},
            error = 'the process running this action stopped before recording its outcome'
        where instance_id = ${instanceId} and status = 'pending'`;
      const [row] = await sql<{ count: number }[]>`
        select count(*)::int as count from public.instance_operations
        where instance_id = ${instanceId} and status = 'unknown'`;
      return row!.count;
    },
    resolveUnknown: async (instanceId, replanned, epoch) => {
      const rows = await sql`
        update public.instance_operations o
        set status = case when o.action = any(${[...ARCHIVE_ACTIONS]}::text[])
                            or (o.action, o.target) in (select * from unnest(${replanned.map((r) => r.action)}::text[], ${replanned.map((r) => r.target)}::text[]))
                          then 'superseded' else 'succeeded' end::public.operation_status,
            epoch = ${epoch},
            error = coalesce(o.error || '; ', '') || case
              when o.action = any(${[...ARCHIVE_ACTIONS]}::text[]) then 'resolved: superseded by the backup and restore records, from which the work resumes'
              when (o.action, o.target) in (select * from unnest(${replanned.map((r) => r.action)}::text[], ${replanned.map((r) => r.target)}::text[]))
                then 'resolved: a later pass observed the host and planned it again'
              else 'resolved: a later pass observed the host and found nothing of it left to do' end
        where o.instance_id = ${instanceId} and o.status = 'unknown'`;
      return rows.count;
    },
    succeededTargets: async (instanceId, action) => {
      const rows = await sql<{ target: string }[]>`
        select distinct target from public.instance_operations
        where instance_id = ${instanceId} and action = ${action} and status = 'succeeded'`;
      return new Set(rows.map((row) => row.target));
    },
  };
}

export interface OperationRow {
  readonly id: number;
  readonly action: string;
  readonly target: string;
  readonly status: string;
  readonly startedAt: Date;
  readonly error: string | null;
}

/** The latest journal entries of an instance, newest first (for `status` and tests). */
export async function recentOperations(sql: Sql, instanceId: string, limit = 20): Promise<OperationRow[]> {
  const rows = await sql<{ id: string; action: string; target: string; status: string; started_at: Date; error: string | null }[]>`
    select id, action, target, status, started_at, error from public.instance_operations
    where instance_id = ${instanceId} order by id desc limit ${limit}`;
  return rows.map((row) => ({ id: Number(row.id), action: row.action, target: row.target, status: row.status, startedAt: row.started_at, error: row.error }));
}
