/**
 * The invariants the chaos soak checks once everything has settled. Each returns the violations
 * it found, one readable line each; an empty list means the invariant holds.
 */
import { spawnSync } from "node:child_process";

import type { Sql } from "postgres";

import type { StripeSim } from "../../src/sources/stripe/sim.ts";
import type { ChildApp } from "./sandbox-child.ts";

const COMPONENTS = ["matrix", "backend", "frontend"] as const;
const WITH_STORAGE = new Set(["matrix", "backend"]);

export interface CheckInput {
  readonly sql: Sql;
  readonly sim: StripeSim;
  readonly accepted: ReadonlySet<string>;
  /** Apps on each host, by the host's name in dokku_hosts. */
  readonly hostApps: ReadonlyMap<string, readonly ChildApp[]>;
  /** Environment for a guest `plan` run against the daemon's database and hosts. */
  readonly planEnv: Record<string, string>;
}

export type Invariant = (input: CheckInput) => Promise<string[]>;

const ms = (date: Date | null): number | null => date?.getTime() ?? null;
const seconds = (value: number | null): number | null => (value === null ? null : value * 1000);

/** Every subscription's row equals the state its events define (the sim's state). */
export const subscriptionsMatch: Invariant = async ({ sql, sim }) => {
  const ids = [...sim.subscriptions.keys()];
  const rows = await sql<{ id: string; status: string; tier: string; cancel: boolean; canceled_at: Date | null; start: Date | null; end: Date | null; trial: Date | null }[]>`
    select stripe_subscription_id as id, status::text as status, tier::text as tier, cancel_at_period_end as cancel, canceled_at,
           current_period_start as start, current_period_end as end, trial_ends_at as trial
    from public.subscriptions where stripe_subscription_id = any(${ids})`;
  const byId = new Map(rows.map((row) => [row.id, row]));
  return ids.flatMap((id) => {
    const s = sim.subscriptions.get(id)!;
    const row = byId.get(id);
    const want = { status: s.status, tier: s.tier, cancel: s.cancelAtPeriodEnd, canceledAt: seconds(s.canceledAt), start: seconds(s.periodStart), end: seconds(s.periodEnd), trial: seconds(s.trialEnd) };
    const got = row && { status: row.status, tier: row.tier, cancel: row.cancel, canceledAt: ms(row.canceled_at), start: ms(row.start), end: ms(row.end), trial: ms(row.trial) };
    return JSON.stringify(got) === JSON.stringify(want) ? [] : [`subscription ${id}: row ${JSON.stringify(got ?? null)} but its events define ${JSON.stringify(want)}`];
  });
};

/** `plan` (a guest of the daemon's database) exits 0: nothing left to change on any instance. */
export const planConverged: Invariant = async ({ planEnv }) => {
  const run = spawnSync(process.execPath, ["src/bin.mjs", "plan"], { env: planEnv, encoding: "utf8", timeout: 120_000 });
  if (run.status === 0) return [];
  return [`plan exited ${String(run.status ?? run.signal)}: ${`${run.stdout}\n${run.stderr}`.trim().split("\n").slice(0, 20).join(" | ")}`];
};

/** Every app on every host is a component of a live instance placed on that host, on no other. */
export const noStrayApps: Invariant = async ({ sql, hostApps }) => {
  const rows = await sql<{ subdomain: string; host: string }[]>`
    select i.subdomain, h.name as host from public.instances i join public.dokku_hosts h on h.id = i.host_id
    where i.status <> 'deprovisioned'`;
  const expected = new Map<string, string>(rows.flatMap((row) => COMPONENTS.map((c) => [`${row.subdomain}-${c}`, row.host] as const)));
  const seen = new Map<string, string>();
  const violations: string[] = [];
  for (const [host, apps] of hostApps) {
    for (const app of apps) {
      if (expected.get(app.name) !== host) violations.push(`app ${app.name} on host ${host} belongs to no live instance placed there`);
      const other = seen.get(app.name);
      if (other !== undefined) violations.push(`app ${app.name} exists on both ${other} and ${host}`);
      seen.set(app.name, host);
    }
  }
  return violations;
};

/** At most one live instance per subscription. */
export const noDuplicateInstances: Invariant = async ({ sql }) => {
  const rows = await sql<{ subscription_id: string; count: number }[]>`
    select subscription_id, count(*)::int as count from public.instances where status <> 'deprovisioned'
    group by subscription_id having count(*) > 1`;
  return rows.map((row) => `subscription ${row.subscription_id} has ${row.count} live instances`);
};

/** No app with storage destroyed before a completed pre-deprovision backup of its component. */
export const noTeardownWithoutBackup: Invariant = async ({ sql }) => {
  const rows = await sql<{ target: string; subdomain: string; started_at: Date; backed_up: boolean }[]>`
    select o.target, i.subdomain, o.started_at,
           exists (select 1 from public.instance_backups b
                   where b.instance_id = o.instance_id and b.backup_type = 'pre_deprovision' and b.status = 'completed'
                     and (b.component is null or o.target = i.subdomain || '-' || b.component)
                     and b.completed_at <= o.started_at) as backed_up
    from public.instance_operations o join public.instances i on i.id = o.instance_id
    where o.action = 'destroyApp' and o.status <> 'failed'`;
  return rows
    .filter((row) => WITH_STORAGE.has(row.target.slice(row.subdomain.length + 1)) && !row.backed_up)
    .map((row) => `${row.target} destroyed at ${row.started_at.toISOString()} without a completed final backup before it`);
};

/** No journal row left `pending`. */
export const noPendingJournal: Invariant = async ({ sql }) => {
  const rows = await sql<{ id: string; action: string; target: string }[]>`
    select id::text as id, action, target from public.instance_operations where status = 'pending'`;
  return rows.map((row) => `journal row ${row.id} (${row.action} ${row.target}) is still pending`);
};

/** Every accepted event is processed (or ignored), or dead-lettered with a reason. */
export const noLostEvents: Invariant = async ({ sql, accepted }) => {
  const rows = await sql<{ id: string; status: string; last_error: string | null }[]>`
    select id, status::text as status, last_error from public.stripe_events where id = any(${[...accepted]})`;
  const byId = new Map(rows.map((row) => [row.id, row]));
  return [...accepted].flatMap((id) => {
    const row = byId.get(id);
    if (!row) return [`event ${id} was answered 200 but is not in the inbox`];
    if (row.status === "processed" || row.status === "ignored") return [];
    if (row.status === "dead" && row.last_error) return [];
    return [`event ${id} is ${row.status}${row.last_error ? ` (${row.last_error})` : ""}`];
  });
};

export const INVARIANTS: Record<string, Invariant> = {
  subscriptions_match_events: subscriptionsMatch,
  plan_converged: planConverged,
  no_stray_apps: noStrayApps,
  no_duplicate_instances: noDuplicateInstances,
  no_teardown_without_backup: noTeardownWithoutBackup,
  no_pending_journal: noPendingJournal,
  no_lost_events: noLostEvents,
};

/** What the soak left to check, so a report with 0 violations shows the invariants had material. */
export async function coverage(sql: Sql): Promise<Record<string, number>> {
  const [row] = await sql<{ live: number; deprovisioned: number; destroyed_apps: number; final_backups: number; events: number; dead_events: number }[]>`
    select (select count(*)::int from public.instances where status <> 'deprovisioned') as live,
           (select count(*)::int from public.instances where status = 'deprovisioned') as deprovisioned,
           (select count(*)::int from public.instance_operations where action = 'destroyApp' and status = 'succeeded') as destroyed_apps,
           (select count(*)::int from public.instance_backups where backup_type = 'pre_deprovision' and status = 'completed') as final_backups,
           (select count(*)::int from public.stripe_events) as events,
           (select count(*)::int from public.stripe_events where status = 'dead') as dead_events`;
  return { ...row! };
}
