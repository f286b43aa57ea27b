/**
 * The InstanceStore of the reconciler over Postgres: one subscription's desired-state inputs in,
 * status out. Rows are mapped to domain types here, at the repository boundary.
 */
import type { Sql, TransactionSql } from "postgres";

import {
  appName,
  COMPONENTS,
  type Condition,
  type HealthStatus,
  type HostRef,
  type InstanceRecord,
  type InstanceStatus,
  type InstanceStore,
  type Phase,
  type ReconcileSubject,
  type SettledRow,
  type StatusUpdate,
  type SubscriptionState,
  type SubscriptionStatus,
  type Tier,
} from "../reconciler/types.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Serialises placement so two workers never fill the same last slot of a host. */
const PLACEMENT_LOCK = "mindroom_placement";

/** The columns `toSubscription` maps (select them as loadSubject does). */
export interface SubscriptionRow {
  id: string;
  account_id: string;
  tier: Tier;
  status: SubscriptionStatus;
  past_due_since: Date | null;
  canceled_at: Date | null;
  cancel_at_period_end: boolean;
  current_period_end: Date | null;
  region: string | null;
  max_agents: number | null;
  max_messages_per_day: number | null;
  max_storage_gb: number | null;
  max_platforms: number | null;
  max_team_members: number | null;
  features: Record<string, unknown>;
  memory_mb: number;
  cpus: string;
  instance_count: number;
}

interface InstanceRow {
  id: string;
  account_id: string;
  subdomain: string;
  desired_state: Phase | null;
  reconcile_paused: boolean;
  overrides: unknown;
  generation: string;
  observed_generation: string;
  status: InstanceStatus;
  conditions: Condition[];
  health_status: HealthStatus;
  host_id: string | null;
  host_name: string | null;
  ssh_url: string | null;
  host_key: string | null;
  max_command_bytes: number | null;
}

export function createInstanceStore(sql: Sql): InstanceStore {
  return {
    load: (subscriptionId) => loadSubject(sql, subscriptionId),
    provision: async (subscriptionId) => {
      await sql`select public.provision_instance(${subscriptionId}::uuid, '{}'::jsonb)`;
    },
    place: (instanceId, region) => place(sql, instanceId, region),
    writeStatus: (instanceId, previous, update) => writeStatus(sql, instanceId, previous, update),
    listKeys: async () => {
      const rows = await sql<{ id: string }[]>`
        select s.id from public.subscriptions s
        where exists (select 1 from public.instances i where i.subscription_id = s.id and i.status <> 'deprovisioned')
           or (s.status in ('trialing', 'active', 'past_due')
               and not exists (select 1 from public.instances i where i.subscription_id = s.id))
        order by s.id`;
      return rows.map((row) => row.id);
    },
    settled: () => settled(sql),
  };
}

/** The bulk read of a resync wave (InstanceStore.settled): one statement for every instance. */
async function settled(sql: Sql): Promise<Map<string, SettledRow>> {
  const rows = await sql<{ subscription_id: string; id: string; generation: string; host_id: string; status: InstanceStatus; health_status: HealthStatus; cancel_at_period_end: boolean; current_period_end: Date | null }[]>`
    select i.subscription_id, i.id, i.generation::text as generation, i.host_id, i.status, i.health_status,
           s.cancel_at_period_end, s.current_period_end
    from public.instances i join public.subscriptions s on s.id = i.subscription_id
    where i.status in ('running', 'stopped') and i.observed_generation = i.generation and i.host_id is not null
      and i.last_error is null and not i.reconcile_paused and i.restart_requested_at is null
      and i.health_status in ('healthy', 'unknown')
      and not exists (select 1 from public.instance_operations o where o.instance_id = i.id and o.status in ('pending', 'unknown'))
      and not exists (select 1 from public.instance_backups b where b.instance_id = i.id and b.status = 'requested')
      and not exists (select 1 from public.instance_restores r where r.instance_id = i.id and r.status in ('requested', 'in_progress'))`;
  const byKey = new Map<string, SettledRow>();
  for (const row of rows) {
    byKey.set(row.subscription_id, {
      instanceId: row.id,
      generation: Number(row.generation),
      hostId: row.host_id,
      status: row.status,
      healthStatus: row.health_status,
      cancelAtPeriodEnd: row.cancel_at_period_end,
      currentPeriodEnd: row.current_period_end,
    });
  }
  return byKey;
}

/**
 * One statement per load: the subscription, its live instance (if any) and that instance's host
 * and overrides, joined laterally. A reconcile of a new subscription runs this once; the two
 * statements it replaced (subscription, then instance) cost the controller a second round trip
 * and a second statement on every key.
 */
async function loadSubject(sql: Sql, subscriptionId: string): Promise<ReconcileSubject | undefined> {
  if (!UUID.test(subscriptionId)) return undefined;
  const [row] = await sql<(SubscriptionRow & LiveInstanceColumns)[]>`
    select s.id, s.account_id, s.tier, s.status, s.past_due_since, s.canceled_at, s.cancel_at_period_end,
           s.current_period_end, s.region, s.max_agents, s.max_messages_per_day, s.max_storage_gb,
           s.max_platforms, s.max_team_members, s.features, t.memory_mb, t.cpus::text as cpus,
           (select count(*)::int from public.instances i where i.subscription_id = s.id) as instance_count,
           live.*
    from public.subscriptions s join public.tiers t on t.name = s.tier
    left join lateral (
      select i.id as instance_id, i.account_id as instance_account_id, i.subdomain, i.desired_state,
             i.reconcile_paused, o.components as overrides, i.generation::text as generation,
             i.observed_generation::text as observed_generation, i.status as instance_status,
             i.conditions, i.health_status, i.host_id,
             h.name as host_name, h.ssh_url, h.host_key, h.max_command_bytes
      from public.instances i left join public.dokku_hosts h on h.id = i.host_id
      left join public.instance_overrides o on o.instance_id = i.id
      where i.subscription_id = s.id and i.status <> 'deprovisioned'
      limit 1
    ) live on true
    where s.id = ${subscriptionId}`;
  if (!row) return undefined;
  const instance = liveInstanceRow(row);
  return {
    subscription: toSubscription(row),
    tier: row.tier,
    instance: instance ? toInstance(instance) : null,
    host: instance ? toHost(instance) : null,
    instanceCount: row.instance_count,
  };
}

/** The lateral part of loadSubject's row: an InstanceRow whose clashing names carry a prefix, all null without a live instance. */
type LiveInstanceColumns = Omit<InstanceRow, "id" | "account_id" | "status"> & {
  instance_id: string | null;
  instance_account_id: string;
  instance_status: InstanceStatus;
};

function liveInstanceRow(row: LiveInstanceColumns): InstanceRow | null {
  if (row.instance_id === null) return null;
  const { instance_id, instance_account_id, instance_status, ...rest } = row;
  return { ...rest, id: instance_id, account_id: instance_account_id, status: instance_status };
}

export function toSubscription(row: SubscriptionRow): SubscriptionState {
  const features: Record<string, boolean> = {};
  for (const [name, value] of Object.entries(row.features ?? {})) features[name] = value === true;
  return {
    id: row.id,
    accountId: row.account_id,
    tier: row.tier,
    status: row.status,
    pastDueSince: row.past_due_since,
    canceledAt: row.canceled_at,
    cancelAtPeriodEnd: row.cancel_at_period_end,
    currentPeriodEnd: row.current_period_end,
    region: row.region,
    limits: {
      maxAgents: row.max_agents,
      maxMessagesPerDay: row.max_messages_per_day,
      maxStorageGb: row.max_storage_gb,
      maxPlatforms: row.max_platforms,
      maxTeamMembers: row.max_team_members,
    },
    features,
    resources: { memoryMb: row.memory_mb, cpus: Number(row.cpus) },
  };
}

function toInstance(row: InstanceRow): InstanceRecord {
  return {
    id: row.id,
    accountId: row.account_id,
    subdomain: row.subdomain,
    desiredState: row.desired_state,
    reconcilePaused: row.reconcile_paused,
    overrides: row.overrides ?? {},
    generation: Number(row.generation),
    observedGeneration: Number(row.observed_generation),
    status: row.status,
    conditions: row.conditions ?? [],
    healthStatus: row.health_status,
    hostId: row.host_id,
  };
}

function toHost(row: InstanceRow): HostRef | null {
  if (!row.host_id || !row.host_name || !row.ssh_url) return null;
  return hostRef({ id: row.host_id, name: row.host_name, ssh_url: row.ssh_url, host_key: row.host_key, max_command_bytes: row.max_command_bytes });
}

type HostRefRow = { id: string; name: string; ssh_url: string; host_key: string | null; max_command_bytes: number | null };

function hostRef(row: HostRefRow): HostRef {
  return { id: row.id, name: row.name, sshUrl: row.ssh_url, hostKey: row.host_key, ...(row.max_command_bytes !== null && { maxCommandBytes: row.max_command_bytes }) };
}

/** The enabled host with the most free capacity (in the region, when one is named); sticky. */
async function place(sql: Sql, instanceId: string, region: string | null): Promise<HostRef | undefined> {
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${PLACEMENT_LOCK}))`;
    const [host] = await tx<HostRefRow[]>`
      select h.id, h.name, h.ssh_url, h.host_key, h.max_command_bytes
      from public.dokku_hosts h
      where h.enabled and (${region}::text is null or h.region = ${region})
        and h.capacity > (select count(*) from public.instances i where i.host_id = h.id and i.status <> 'deprovisioned')
      order by h.capacity - (select count(*) from public.instances i where i.host_id = h.id and i.status <> 'deprovisioned') desc, h.name
      limit 1`;
    if (!host) return undefined;
    const placed = await tx`update public.instances set host_id = ${host.id} where id = ${instanceId} and host_id is null`;
    if (placed.count === 0) {
      const [current] = await tx<HostRefRow[]>`
        select h.id, h.name, h.ssh_url, h.host_key, h.max_command_bytes from public.instances i join public.dokku_hosts h on h.id = i.host_id
        where i.id = ${instanceId}`;
      return current ? hostRef(current) : undefined;
    }
    return hostRef(host);
  });
}

async function writeStatus(sql: Sql, instanceId: string, previous: InstanceStatus, update: StatusUpdate): Promise<void> {
  await sql.begin(async (tx) => {
    const [row] = await tx<{ account_id: string; previous_error: string | null }[]>`
      with old as (select last_error from public.instances where id = ${instanceId} for update)
      update public.instances set
        status = ${update.status},
        conditions = ${tx.json(update.conditions as unknown as Parameters<typeof tx.json>[0])},
        observed_generation = coalesce(${update.observedGeneration}::bigint, observed_generation),
        last_error = ${update.lastError},
        frontend_url = coalesce(${update.urls?.frontend ?? null}, frontend_url),
        backend_url = coalesce(${update.urls?.backend ?? null}, backend_url),
        matrix_url = coalesce(${update.urls?.matrix ?? null}, matrix_url)
      from old
      where id = ${instanceId}
      returning account_id, old.last_error as previous_error`;
    if (!row) return;
    if (update.refusal && row.previous_error !== update.lastError) await auditRefusal(tx, row.account_id, instanceId, update.refusal);
    if (previous === update.status) return;
    await tx`
      insert into public.audit_logs (account_id, instance_id, action, action_category, details, actor, success, error_message)
      values (${row.account_id}, ${instanceId}, 'instance.status_changed', 'reconcile',
              ${tx.json({ from: previous, to: update.status })}, 'controller', ${update.lastError === null}, ${update.lastError})`;
    const notice = NOTICES[update.status];
    if (notice) await queueNotice(tx, instanceId, notice);
  });
}

/** One audit row per distinct refusal: a resync that refuses the same input again adds none. */
async function auditRefusal(tx: TransactionSql, accountId: string, instanceId: string, refusal: { reason: string; message: string }): Promise<void> {
  await tx`
    insert into public.audit_logs (account_id, instance_id, action, action_category, details, actor, success, error_message)
    values (${accountId}, ${instanceId}, 'instance.reconcile_refused', 'reconcile',
            ${tx.json({ reason: refusal.reason })}, 'controller', false, ${refusal.message})`;
}

/** Emails the outbox sends on a status transition, once per instance (dedupe key). */
const NOTICES: Partial<Record<InstanceStatus, { kind: string; subject: string; body: string }>> = {
  running: { kind: "welcome", subject: "Your MindRoom instance is ready", body: "Your MindRoom instance is running at " },
  deprovisioned: { kind: "cancellation", subject: "Your MindRoom instance was removed", body: "Your MindRoom instance was removed after a final backup: " },
};

async function queueNotice(tx: TransactionSql, instanceId: string, notice: { kind: string; subject: string; body: string }): Promise<void> {
  await tx`
    insert into public.notifications (account_id, instance_id, kind, dedupe_key, recipient, subject, body)
    select a.id, i.id, ${notice.kind}, ${notice.kind} || ':' || i.id::text, a.email, ${notice.subject},
           ${notice.body} || coalesce(i.frontend_url, i.subdomain)
    from public.instances i join public.accounts a on a.id = i.account_id
    where i.id = ${instanceId}
    on conflict (dedupe_key) do nothing`;
}

/** Dokku app names of every live instance placed on a host (what orphans are measured against). */
export async function liveAppNames(sql: Sql, hostId: string): Promise<Set<string>> {
  const rows = await sql<{ subdomain: string }[]>`
    select subdomain from public.instances where host_id = ${hostId} and status <> 'deprovisioned'`;
  return new Set(rows.flatMap((row) => COMPONENTS.map((component) => appName(row.subdomain, component))));
}

export interface InstanceKey {
  readonly subscriptionId: string;
  readonly instanceId: string | null;
  readonly subdomain: string | null;
}

/**
 * Resolves what an operator types to the work-queue key: an instance id, a subdomain, a
 * subscription id, or a Stripe subscription id (`sub_...`, as `stripe send` prints it). The
 * subscription's newest instance comes first, so `sub_...` names the live one.
 */
export async function resolveInstanceKey(sql: Sql, id: string): Promise<InstanceKey | undefined> {
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id) ? id : null;
  const [row] = await sql<{ subscription_id: string; instance_id: string | null; subdomain: string | null }[]>`
    (select i.subscription_id, i.id as instance_id, i.subdomain from public.instances i
     where i.id = ${uuid}::uuid or i.subdomain = ${id})
    union all
    (select s.id, i.id, i.subdomain from public.subscriptions s
     left join lateral (select id, subdomain from public.instances where subscription_id = s.id order by created_at desc limit 1) i on true
     where s.id = ${uuid}::uuid or s.stripe_subscription_id = ${id})
    limit 1`;
  return row ? { subscriptionId: row.subscription_id, instanceId: row.instance_id, subdomain: row.subdomain } : undefined;
}

/** The tier `subscriptions` holds for a Stripe subscription id (`stripe send` follow-ups keep it). */
export async function tierOfStripeSubscription(sql: Sql, stripeSubscriptionId: string): Promise<string | undefined> {
  const [row] = await sql<{ tier: string }[]>`select tier::text as tier from public.subscriptions where stripe_subscription_id = ${stripeSubscriptionId}`;
  return row?.tier;
}
