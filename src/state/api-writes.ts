/**
 * What the customer API writes. Each write is one transaction that names its actor
 * (`api_key:<id>`, the `mindroom.actor` setting every audit row reads) and audits itself; the
 * controller learns of it through the usual NOTIFY and acts in its own pass, never here.
 */
import type { Sql, TransactionSql } from "postgres";

import type { Phase } from "../reconciler/types.ts";
import { RECONCILE_CHANNEL } from "./reconcile-requests.ts";

async function asActor<T>(sql: Sql, actor: string, work: (tx: TransactionSql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('mindroom.actor', ${actor}, true)`;
    return work(tx);
  }) as Promise<T>;
}

async function audit(tx: TransactionSql, accountId: string, instanceId: string | null, action: string, category: string, details: Record<string, unknown>): Promise<void> {
  await tx`select public.audit(${accountId}::uuid, ${instanceId}::uuid, ${action}, ${category}, ${tx.json(details as never)})`;
}

/** Sets the instance's desired_state override (null clears it); audited with from and to. */
export async function setDesiredState(sql: Sql, actor: string, accountId: string, instanceId: string, desired: Phase | null): Promise<void> {
  await asActor(sql, actor, async (tx) => {
    const [row] = await tx<{ previous: Phase | null }[]>`
      select desired_state as previous from public.instances where id = ${instanceId} and account_id = ${accountId} for update`;
    if (!row || row.previous === desired) return;
    await tx`update public.instances set desired_state = ${desired} where id = ${instanceId}`;
    await audit(tx, accountId, instanceId, "instance_desired_state_changed", "instance", { from: row.previous, to: desired });
  });
}

/** Asks the controller to restart every component of the instance in its next pass. */
export async function requestRestart(sql: Sql, actor: string, accountId: string, instanceId: string): Promise<void> {
  await asActor(sql, actor, async (tx) => {
    const [row] = await tx<{ subscription_id: string }[]>`
      update public.instances set restart_requested_at = now() where id = ${instanceId} and account_id = ${accountId}
      returning subscription_id`;
    if (!row) return;
    await audit(tx, accountId, instanceId, "instance_restart_requested", "instance", {});
    await tx`select pg_notify(${RECONCILE_CHANNEL}, ${row.subscription_id})`;
  });
}

/** Audits a reconcile asked through the API (the request itself goes over NOTIFY). */
export async function auditReconcileRequest(sql: Sql, actor: string, accountId: string, instanceId: string): Promise<void> {
  await asActor(sql, actor, (tx) => audit(tx, accountId, instanceId, "instance_reconcile_requested", "reconcile", {}));
}

/**
 * A manual backup request of every component, unless the instance already had `perDay` manual
 * requests in the last 24 hours: then undefined and nothing is written.
 */
export async function requestManualBackup(sql: Sql, actor: string, accountId: string, instanceId: string, perDay: number): Promise<string | undefined> {
  return asActor(sql, actor, async (tx) => {
    await tx`select 1 from public.instances where id = ${instanceId} and account_id = ${accountId} for update`;
    const [row] = await tx<{ id: string }[]>`
      insert into public.instance_backups (instance_id, backup_type, status)
      select ${instanceId}, 'manual', 'requested'
      where (select count(*) from public.instance_backups
             where instance_id = ${instanceId} and backup_type = 'manual' and request_id is null
               and created_at > now() - interval '1 day'
               and coalesce(error, '') not like 'manual backup limit%') < ${perDay}
      returning id`;
    if (!row) return undefined;
    await audit(tx, accountId, instanceId, "backup_requested", "backup", { backup_id: row.id });
    return row.id;
  });
}

/** A restore of `backupId` into its own instance; returns the restore's id. */
export async function requestRestoreOf(sql: Sql, actor: string, accountId: string, instanceId: string, backupId: string): Promise<string> {
  return asActor(sql, actor, async (tx) => {
    const [row] = await tx<{ id: string }[]>`
      insert into public.instance_restores (backup_id, instance_id, requested_by)
      values (${backupId}, ${instanceId}, ${actor}) returning id`;
    await audit(tx, accountId, instanceId, "restore_requested", "backup", { backup_id: backupId, restore_id: row!.id });
    return row!.id;
  });
}

export interface NewTicket {
  readonly subject: string;
  readonly description: string;
  readonly instanceId: string | null;
}

/** Inserts a ticket (priority from the tier, by trigger); returns its id. */
export async function createTicket(sql: Sql, actor: string, accountId: string, ticket: NewTicket): Promise<string> {
  return asActor(sql, actor, async (tx) => {
    const [row] = await tx<{ id: string }[]>`
      insert into public.support_tickets (account_id, instance_id, subject, description)
      values (${accountId}, ${ticket.instanceId}, ${ticket.subject}, ${ticket.description}) returning id`;
    await audit(tx, accountId, ticket.instanceId, "support_ticket_created", "support", { ticket_id: row!.id });
    return row!.id;
  });
}
