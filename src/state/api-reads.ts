/**
 * What the customer API reads, always within one account: a row of another account is answered
 * exactly like a missing one, so the API can never reveal that it exists.
 */
import type { Sql } from "postgres";

import type { Condition, HealthStatus, InstanceStatus, Phase, SubscriptionState } from "../reconciler/types.ts";
import { type BackupRow, findBackup, listBackups } from "./backups.ts";
import { type SubscriptionRow, toSubscription } from "./instances.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function uuidOrNull(id: string): string | null {
  return UUID.test(id) ? id : null;
}

export interface AccountView {
  readonly id: string;
  readonly email: string;
  readonly fullName: string | null;
  readonly companyName: string | null;
  readonly createdAt: Date;
}

export async function accountView(sql: Sql, accountId: string): Promise<AccountView | undefined> {
  const [row] = await sql<{ id: string; email: string; full_name: string | null; company_name: string | null; created_at: Date }[]>`
    select id, email, full_name, company_name, created_at from public.accounts where id = ${accountId}`;
  return row && { id: row.id, email: row.email, fullName: row.full_name, companyName: row.company_name, createdAt: row.created_at };
}

/** The account's subscriptions, highest tier first. */
export async function subscriptionsOf(sql: Sql, accountId: string): Promise<SubscriptionState[]> {
  const rows = await sql<SubscriptionRow[]>`
    select ${subscriptionColumns(sql)} from public.subscriptions s join public.tiers t on t.name = s.tier
    where s.account_id = ${accountId} order by t.rank desc, s.created_at`;
  return rows.map(toSubscription);
}

function subscriptionColumns(sql: Sql) {
  return sql`
    s.id, s.account_id, s.tier, s.status, s.past_due_since, s.canceled_at, s.cancel_at_period_end,
    s.current_period_end, s.region, s.max_agents, s.max_messages_per_day, s.max_storage_gb,
    s.max_platforms, s.max_team_members, s.features, t.memory_mb, t.cpus::text as cpus, 0 as instance_count`;
}

export interface InstanceView {
  readonly id: string;
  readonly subdomain: string;
  readonly status: InstanceStatus;
  readonly desiredState: Phase | null;
  readonly reconcilePaused: boolean;
  readonly generation: number;
  readonly observedGeneration: number;
  readonly conditions: readonly Condition[];
  readonly healthStatus: HealthStatus;
  readonly healthDetails: unknown;
  readonly lastHealthCheck: Date | null;
  readonly urls: { readonly frontend: string | null; readonly backend: string | null; readonly matrix: string | null };
  readonly lastError: string | null;
  readonly memoryLimitMb: number | null;
  readonly cpuLimit: number | null;
  readonly restartRequestedAt: Date | null;
  readonly lastRestartAt: Date | null;
  readonly createdAt: Date;
  readonly subscription: SubscriptionState;
}

interface InstanceRow {
  id: string;
  subscription_id: string;
  subdomain: string;
  status: InstanceStatus;
  desired_state: Phase | null;
  reconcile_paused: boolean;
  generation: string;
  observed_generation: string;
  conditions: Condition[];
  health_status: HealthStatus;
  health_details: unknown;
  last_health_check: Date | null;
  frontend_url: string | null;
  backend_url: string | null;
  matrix_url: string | null;
  last_error: string | null;
  memory_limit_mb: number | null;
  cpu_limit: string | null;
  restart_requested_at: Date | null;
  last_restart_at: Date | null;
  created_at: Date;
}

function instanceColumns(sql: Sql) {
  return sql`
    i.id, i.subscription_id, i.subdomain, i.status, i.desired_state, i.reconcile_paused,
    i.generation::text as generation, i.observed_generation::text as observed_generation, i.conditions,
    i.health_status, i.health_details, i.last_health_check, i.frontend_url, i.backend_url, i.matrix_url,
    i.last_error, i.memory_limit_mb, i.cpu_limit::text as cpu_limit, i.restart_requested_at,
    i.last_restart_at, i.created_at`;
}

/** One of the account's instances, by id or subdomain. */
export async function findInstance(sql: Sql, accountId: string, idOrSubdomain: string): Promise<InstanceView | undefined> {
  const rows = await sql<InstanceRow[]>`
    select ${instanceColumns(sql)} from public.instances i
    where i.account_id = ${accountId} and (i.id = ${uuidOrNull(idOrSubdomain)}::uuid or i.subdomain = ${idOrSubdomain})`;
  return (await withSubscriptions(sql, rows))[0];
}

export interface Page<T> {
  readonly items: readonly T[];
  readonly hasMore: boolean;
}

/** The account's instances, newest first, after `startingAfter` (an instance id) when given. */
export async function listInstances(sql: Sql, accountId: string, limit: number, startingAfter: string | null): Promise<Page<InstanceView> | undefined> {
  const cursor = startingAfter === null ? null : await cursorOf(sql, accountId, startingAfter);
  if (startingAfter !== null && !cursor) return undefined;
  const rows = await sql<InstanceRow[]>`
    select ${instanceColumns(sql)} from public.instances i
    where i.account_id = ${accountId}
      and (${cursor?.created_at ?? null}::timestamptz is null or (i.created_at, i.id) < (${cursor?.created_at ?? null}::timestamptz, ${cursor?.id ?? null}::uuid))
    order by i.created_at desc, i.id desc limit ${limit + 1}`;
  const items = await withSubscriptions(sql, rows.slice(0, limit));
  return { items, hasMore: rows.length > limit };
}

async function cursorOf(sql: Sql, accountId: string, id: string): Promise<{ id: string; created_at: Date } | undefined> {
  const [row] = await sql<{ id: string; created_at: Date }[]>`
    select id, created_at from public.instances where account_id = ${accountId} and id = ${uuidOrNull(id)}::uuid`;
  return row;
}

async function withSubscriptions(sql: Sql, rows: readonly InstanceRow[]): Promise<InstanceView[]> {
  if (rows.length === 0) return [];
  const ids = [...new Set(rows.map((row) => row.subscription_id))];
  const subs = await sql<SubscriptionRow[]>`
    select ${subscriptionColumns(sql)} from public.subscriptions s join public.tiers t on t.name = s.tier
    where s.id = any(${sql.array(ids)}::uuid[])`;
  const byId = new Map(subs.map((row) => [row.id, toSubscription(row)]));
  return rows.map((row) => toInstanceView(row, byId.get(row.subscription_id)!));
}

function toInstanceView(row: InstanceRow, subscription: SubscriptionState): InstanceView {
  return {
    id: row.id,
    subdomain: row.subdomain,
    status: row.status,
    desiredState: row.desired_state,
    reconcilePaused: row.reconcile_paused,
    generation: Number(row.generation),
    observedGeneration: Number(row.observed_generation),
    conditions: row.conditions ?? [],
    healthStatus: row.health_status,
    healthDetails: row.health_details,
    lastHealthCheck: row.last_health_check,
    urls: { frontend: row.frontend_url, backend: row.backend_url, matrix: row.matrix_url },
    lastError: row.last_error,
    memoryLimitMb: row.memory_limit_mb,
    cpuLimit: row.cpu_limit === null ? null : Number(row.cpu_limit),
    restartRequestedAt: row.restart_requested_at,
    lastRestartAt: row.last_restart_at,
    createdAt: row.created_at,
    subscription,
  };
}

/** The newest `limit` backups of one of the account's instances, and whether there are more. */
export async function instanceBackups(sql: Sql, instanceId: string, limit: number): Promise<Page<BackupRow>> {
  const rows = await listBackups(sql, instanceId, limit + 1);
  return { items: rows.slice(0, limit), hasMore: rows.length > limit };
}

/** A backup of one of the account's instances, or undefined. */
export async function findAccountBackup(sql: Sql, accountId: string, backupId: string): Promise<BackupRow | undefined> {
  const id = uuidOrNull(backupId);
  const backup = id ? await findBackup(sql, id) : undefined;
  return backup?.accountId === accountId ? backup : undefined;
}

export interface UsageDay {
  readonly date: string;
  readonly instanceId: string;
  readonly subdomain: string;
  readonly messagesSent: number;
  readonly messagesReceived: number;
  readonly agentsUsed: number;
  readonly errors: number;
  readonly storageBytes: number | null;
}

/** Usage per UTC day and instance in [from, to], both `YYYY-MM-DD`, oldest first. */
export async function usageDays(sql: Sql, accountId: string, from: string, to: string): Promise<UsageDay[]> {
  const rows = await sql<{ date: string; instance_id: string; subdomain: string; messages_sent: number; messages_received: number; agents_used: number; errors: number; storage_bytes: string | null }[]>`
    select u.date::text as date, u.instance_id, i.subdomain, u.messages_sent, u.messages_received, u.agents_used,
           u.errors, u.storage_bytes::text as storage_bytes
    from public.usage_metrics u join public.instances i on i.id = u.instance_id
    where u.account_id = ${accountId} and u.date between ${from}::date and ${to}::date
    order by u.date, i.subdomain`;
  return rows.map((row) => ({
    date: row.date,
    instanceId: row.instance_id,
    subdomain: row.subdomain,
    messagesSent: row.messages_sent,
    messagesReceived: row.messages_received,
    agentsUsed: row.agents_used,
    errors: row.errors,
    storageBytes: row.storage_bytes === null ? null : Number(row.storage_bytes),
  }));
}

/** `get_billing_metrics` of the account over [from, to]: the period's totals. */
export async function billingTotals(sql: Sql, accountId: string, from: string, to: string): Promise<Record<string, unknown>> {
  const [row] = await sql<{ metrics: Record<string, unknown> }[]>`
    select public.get_billing_metrics(${accountId}::uuid, ${from}::date, ${to}::date) as metrics`;
  return row!.metrics;
}

/** `check_usage_limits` of each live instance of the account: today's use against the limits. */
export async function todaysLimits(sql: Sql, accountId: string): Promise<{ instanceId: string; subdomain: string; limits: Record<string, unknown> }[]> {
  const rows = await sql<{ id: string; subdomain: string; limits: Record<string, unknown> }[]>`
    select i.id, i.subdomain, public.check_usage_limits(i.id) as limits from public.instances i
    where i.account_id = ${accountId} and i.status <> 'deprovisioned' order by i.created_at, i.id`;
  return rows.map((row) => ({ instanceId: row.id, subdomain: row.subdomain, limits: row.limits }));
}

export interface TicketView {
  readonly id: string;
  readonly instanceId: string | null;
  readonly subject: string;
  readonly description: string;
  readonly priority: string;
  readonly status: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  readonly resolvedAt: Date | null;
}

export const TICKET_COLUMNS = "id, instance_id, subject, description, priority, status, created_at, updated_at, resolved_at";

export type TicketRow = { id: string; instance_id: string | null; subject: string; description: string; priority: string; status: string; created_at: Date; updated_at: Date; resolved_at: Date | null };

export function toTicket(row: TicketRow): TicketView {
  return {
    id: row.id,
    instanceId: row.instance_id,
    subject: row.subject,
    description: row.description,
    priority: row.priority,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    resolvedAt: row.resolved_at,
  };
}

/** The account's newest `limit` support tickets, and whether there are more. */
export async function listTickets(sql: Sql, accountId: string, limit: number): Promise<Page<TicketView>> {
  const rows = await sql<TicketRow[]>`
    select ${sql.unsafe(TICKET_COLUMNS)} from public.support_tickets where account_id = ${accountId}
    order by created_at desc, id desc limit ${limit + 1}`;
  return { items: rows.slice(0, limit).map(toTicket), hasMore: rows.length > limit };
}

export async function findTicket(sql: Sql, accountId: string, id: string): Promise<TicketView | undefined> {
  const [row] = await sql<TicketRow[]>`
    select ${sql.unsafe(TICKET_COLUMNS)} from public.support_tickets where account_id = ${accountId} and id = ${uuidOrNull(id)}::uuid`;
  return row && toTicket(row);
}
