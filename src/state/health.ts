/**
 * Health repository: probe targets, probe results (`health_checks`), the instance's health columns
 * (through `update_instance_health`), restart bookkeeping and health alerts (`notifications`).
 *
 * Conventions the queries rely on:
 * - One probe round of an instance is written with ONE `checked_at` for all its components, so a
 *   round is `group by checked_at`. Uptime and "last healthy round" are computed that way.
 * - `instances.restart_count` counts restarts since the instance was last healthy ("restarts
 *   without recovery"); `markRecovered` resets it. Failures in a row are counted only after
 *   `last_restart_at`: probes from before a restart describe the previous process.
 */
import type { JSONValue, Sql } from "postgres";

import { type AggregateHealth, type Component, COMPONENTS } from "../reconciler/types.ts";
import type { Db } from "./sql.ts";


/** Uptime covers this many days of rounds (health_checks are pruned after 30 days). */
export const UPTIME_WINDOW_DAYS = 30;

export interface ProbeTarget {
  readonly instanceId: string;
  readonly subscriptionId: string;
  readonly subdomain: string;
  /** The host's Host-routing HTTP address, or null: probe `https://<domain>` instead. */
  readonly ingressUrl: string | null;
  /**
   * No probe result since the instance last ran: new, or resumed after a stop. Probed at once
   * rather than at its phase, so a resumed instance does not show stale health for an interval.
   */
  readonly neverProbed: boolean;
}

/**
 * Instances whose apps should be answering: placed on a host, status `running` (or `failed`, so a
 * recovery is noticed), and no override lowering the phase below running.
 */
export async function listProbeTargets(sql: Db): Promise<ProbeTarget[]> {
  const rows = await sql<{ id: string; subscription_id: string; subdomain: string; ingress_url: string | null; never_probed: boolean }[]>`
    select i.id, i.subscription_id, i.subdomain, h.ingress_url,
           i.last_health_check is null or coalesce(i.last_health_check < i.stopped_at, false) as never_probed
    from instances i
    join dokku_hosts h on h.id = i.host_id
    where i.status in ('running', 'failed')
      and (i.desired_state is null or i.desired_state = 'running')
    order by i.id`;
  return rows.map((r) => ({ instanceId: r.id, subscriptionId: r.subscription_id, subdomain: r.subdomain, ingressUrl: r.ingress_url, neverProbed: r.never_probed }));
}

/** One component's probe result. `error` is a short cause ("timeout after 5000 ms"), never a body. */
export interface ProbeResult {
  readonly component: Component;
  readonly ok: boolean;
  readonly statusCode: number | null;
  readonly latencyMs: number;
  readonly error: string | null;
}

export interface RoundRecord {
  readonly checkedAt: Date;
  readonly results: readonly ProbeResult[];
  readonly health: AggregateHealth;
}

/**
 * Writes one round in one transaction: a `health_checks` row per component (shared checked_at),
 * `update_instance_health` with the aggregate and per-component details, and uptime_percentage.
 * Returns the previous health status (what `update_instance_health` returns).
 */
export async function recordResults(sql: Sql, instanceId: string, round: RoundRecord): Promise<string> {
  return sql.begin(async (tx) => {
    await tx`
      insert into health_checks (instance_id, component, ok, status_code, latency_ms, error, checked_at)
      select ${instanceId}, r.component, r.ok, r.status_code, r.latency_ms, r.error, ${round.checkedAt}
      from jsonb_to_recordset(${tx.json(round.results.map(toRow))})
        as r(component text, ok boolean, status_code int, latency_ms int, error text)`;
    const [previous] = await tx<{ previous: string }[]>`
      select public.update_instance_health(${instanceId}, ${round.health}, ${tx.json(healthDetails(round))}) as previous`;
    await updateUptime(tx, instanceId, round.checkedAt);
    return previous?.previous ?? "unknown";
  });
}

function toRow(r: ProbeResult): JSONValue {
  return { component: r.component, ok: r.ok, status_code: r.statusCode, latency_ms: Math.max(0, Math.round(r.latencyMs)), error: r.error };
}

/** `instances.health_details`: the aggregate's inputs, per component. */
export function healthDetails(round: RoundRecord): { [key: string]: JSONValue } {
  const components: { [component: string]: JSONValue } = {};
  for (const r of round.results) {
    components[r.component] = { ok: r.ok, statusCode: r.statusCode, latencyMs: Math.round(r.latencyMs), error: r.error };
  }
  return { status: round.health, checkedAt: round.checkedAt.toISOString(), components };
}

/**
 * uptime_percentage = share of the instance's rounds in the last UPTIME_WINDOW_DAYS that counted
 * as up, i.e. whose aggregate was healthy or degraded (`countsAsUp`): something answered and the
 * backend did not fail. This SQL mirrors `aggregate()` in reconciler/health-policy.ts.
 */
async function updateUptime(sql: Db, instanceId: string, now: Date): Promise<void> {
  await sql`
    update instances set uptime_percentage = (
      select round(100.0 * count(*) filter (where up) / count(*), 2)
      from (
        select bool_or(ok) and coalesce(bool_and(ok) filter (where component = 'backend'), true) as up
        from health_checks
        where instance_id = ${instanceId}
          and checked_at > ${now}::timestamptz - make_interval(days => ${UPTIME_WINDOW_DAYS})
          and checked_at <= ${now}
        group by checked_at
      ) rounds
      having count(*) > 0
    )
    where id = ${instanceId}`;
}

/**
 * The latest `n` probe outcomes of one component since the instance's last restart, newest first
 * (what health-policy's `consecutiveFailures` counts).
 */
export async function recentProbes(sql: Db, instanceId: string, component: Component, n: number): Promise<{ ok: boolean }[]> {
  const rows = await sql<{ ok: boolean }[]>`
    select c.ok
    from health_checks c
    join instances i on i.id = c.instance_id
    where c.instance_id = ${instanceId} and c.component = ${component}
      and (i.last_restart_at is null or c.checked_at > i.last_restart_at)
    order by c.checked_at desc
    limit ${n}`;
  return [...rows];
}

/** Counts one restart of the instance (of `component`) and audits it. */
export async function recordRestart(sql: Db, instanceId: string, component: Component, now: Date): Promise<void> {
  await sql`
    with updated as (
      update instances set restart_count = restart_count + 1, last_restart_at = ${now}
      where id = ${instanceId}
      returning id, account_id, restart_count
    )
    insert into audit_logs (account_id, instance_id, action, action_category, details, actor)
    select account_id, id, 'instance_component_restarted', 'health',
           jsonb_build_object('component', ${component}::text, 'restartsWithoutRecovery', restart_count), 'controller'
    from updated`;
}

/** When the customer last asked for a restart not yet done, or null. */
export async function restartRequestedAt(sql: Db, instanceId: string): Promise<Date | null> {
  const [row] = await sql<{ at: Date | null }[]>`select restart_requested_at as at from instances where id = ${instanceId}`;
  return row?.at ?? null;
}

/**
 * The restart asked at `requestedAt` (as read, to the millisecond) is done: cleared unless asked
 * again since, and audited at `now`. Health's bookkeeping (restart_count, last_restart_at) is left
 * alone: the customer asked for it, it is no incident.
 */
export async function clearRestartRequest(sql: Db, instanceId: string, requestedAt: Date, now: Date): Promise<void> {
  await sql`
    with cleared as (
      update instances set restart_requested_at = null
      where id = ${instanceId} and date_trunc('milliseconds', restart_requested_at) = ${requestedAt}
      returning id, account_id
    )
    insert into audit_logs (account_id, instance_id, action, action_category, details, actor, created_at)
    select account_id, id, 'instance_restarted', 'instance', jsonb_build_object('requested_at', ${requestedAt}::timestamptz), 'controller', ${now}
    from cleared`;
}

/** The instance was healthy: restarts without recovery start from zero again. Idempotent. */
export async function markRecovered(sql: Db, instanceId: string): Promise<void> {
  await sql`update instances set restart_count = 0 where id = ${instanceId} and restart_count <> 0`;
}

export interface ComponentRestartState {
  readonly component: Component;
  /** Latest probe outcomes since the last restart, newest first. */
  readonly recentProbes: readonly { readonly ok: boolean }[];
  readonly lastRestartAt: Date | null;
  readonly restartsWithoutRecovery: number;
}

export interface InstanceRestartState {
  /** Per component: what `restartDecision` needs, but `shouldRun`, `now` and the failure count. */
  readonly components: readonly ComponentRestartState[];
  /**
   * First failed probe after the instance's last healthy round, or null when nothing failed since:
   * identifies the incident (stable while it lasts, new for the next one).
   */
  readonly unhealthySince: Date | null;
}

/** What the reconciler needs to call `restartDecision` for each component of the instance. */
export async function restartState(sql: Db, instanceId: string, window = 10): Promise<InstanceRestartState | undefined> {
  const [inst] = await sql<{ restart_count: number; last_restart_at: Date | null }[]>`
    select restart_count, last_restart_at from instances where id = ${instanceId}`;
  if (!inst) return undefined;
  const components: ComponentRestartState[] = [];
  for (const component of COMPONENTS) {
    const recent = await recentProbes(sql, instanceId, component, window);
    components.push({ component, recentProbes: recent, lastRestartAt: inst.last_restart_at, restartsWithoutRecovery: inst.restart_count });
  }
  return { components, unhealthySince: await unhealthySince(sql, instanceId) };
}

async function unhealthySince(sql: Db, instanceId: string): Promise<Date | null> {
  const [row] = await sql<{ since: Date | null }[]>`
    select min(checked_at) as since
    from health_checks
    where instance_id = ${instanceId} and not ok
      and checked_at > coalesce((
        select max(checked_at) from (
          select checked_at from health_checks where instance_id = ${instanceId}
          group by checked_at having bool_and(ok)
        ) healthy_rounds
      ), '-infinity')`;
  return row?.since ?? null;
}

const OPERATOR_HINT = '\n\nSee `mindroom-reconciler status` and the runbook entry "An instance is not converging".';

/** The `notifications.dedupe_key` incident part: the start of the unhealthy period. */
export function incidentKey(unhealthySince: Date): string {
  return unhealthySince.toISOString();
}

export interface HealthAlert {
  readonly instanceId: string;
  /** Same key → same incident → at most one alert (`health_alert:<instance>:<incident>`). */
  readonly incidentKey: string;
  /** Operator-readable cause, e.g. the `fail` reason of restartDecision. No secrets. */
  readonly reason: string;
  readonly components: readonly Component[];
}

/**
 * Queues one health alert email to the account's address, once per incident: a second raise with
 * the same key inserts nothing. Returns true when a notification was queued.
 */
export async function raiseHealthAlert(sql: Db, alert: HealthAlert): Promise<boolean> {
  const payload = sql.json({ reason: alert.reason, components: alert.components, incident: alert.incidentKey });
  const rows = await sql<{ id: string }[]>`
    insert into notifications (account_id, instance_id, kind, dedupe_key, recipient, subject, body, payload)
    select a.id, i.id, 'health_alert', 'health_alert:' || i.id::text || ':' || ${alert.incidentKey}::text, a.email,
           'MindRoom instance ' || i.subdomain || ' is unhealthy',
           'Your MindRoom instance ' || i.subdomain || ' stopped answering health checks and automatic restarts did not help ('
             || ${alert.reason}::text || '). We are looking into it.',
           ${payload}
    from instances i join accounts a on a.id = i.account_id
    where i.id = ${alert.instanceId}
    on conflict (dedupe_key) do nothing
    returning id`;
  // The operator hears of every failed instance too (ALERT_EMAIL), once per incident.
  await sql`
    select public.queue_notification(null, i.id, 'operator_alert', 'operator:health:' || i.id::text || ':' || ${alert.incidentKey}::text, 'operator',
      'MindRoom: instance ' || i.subdomain || ' failed', 'Instance ' || i.subdomain || ' (' || i.id::text || ') failed its health checks and restarts did not help: '
        || ${alert.reason}::text || ${OPERATOR_HINT}::text, ${payload})
    from instances i where i.id = ${alert.instanceId}`;
  return rows.length === 1;
}
