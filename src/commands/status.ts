/**
 * `mindroom-reconciler status`: one row per instance (phase desired and observed, health, host,
 * generation, last error) and, in words, why it is not converged. Reads the database only.
 */
import type { Sql } from "postgres";

import type { Config } from "../config.ts";
import { billingPhase, effectivePhase } from "../reconciler/desired.ts";
import type { Condition, Phase } from "../reconciler/types.ts";
import { createInstanceStore } from "../state/instances.ts";
import { outboxSummary } from "../state/notifications.ts";
import { printTable, withDatabase } from "./common.ts";

interface Row {
  subscription_id: string;
  subdomain: string;
  tier: string;
  sub_status: string;
  desired_state: string | null;
  status: string;
  health_status: string;
  host: string | null;
  generation: string;
  observed_generation: string;
  last_error: string | null;
  reconcile_paused: boolean;
  conditions: Condition[];
  pending_ops: number;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler status\n");
    return 2;
  }
  return withDatabase(async ({ db, config }) => {
    const rows = await loadRows(db.sql);
    printRows(rows, await desiredPhases(db.sql, config, rows));
    await printInbox(db.sql);
    await printOutbox(db.sql, config);
    return 0;
  });
}

async function loadRows(sql: Sql): Promise<Row[]> {
  return sql<Row[]>`
    select i.subscription_id, i.subdomain, s.tier::text as tier, s.status::text as sub_status, i.desired_state::text as desired_state,
           i.status::text as status, i.health_status::text as health_status, h.name as host,
           i.generation::text as generation, i.observed_generation::text as observed_generation,
           i.last_error, i.reconcile_paused, i.conditions,
           (select count(*)::int from public.instance_operations o where o.instance_id = i.id and o.status in ('pending', 'unknown')) as pending_ops
    from public.instances i
    join public.subscriptions s on s.id = i.subscription_id
    left join public.dokku_hosts h on h.id = i.host_id
    where i.status <> 'deprovisioned' or i.updated_at > now() - interval '1 day'
    order by i.subdomain`;
}

interface Desired {
  readonly phase: Phase;
  /** What decided it: billing, the desired_state override, and whether reconcile is paused. */
  readonly why: string;
}

/** The phase each instance is meant to have, computed as the controller does (pure desired.ts). */
async function desiredPhases(sql: Sql, config: Config, rows: readonly Row[]): Promise<Map<string, Desired>> {
  const store = createInstanceStore(sql);
  const now = new Date();
  const result = new Map<string, Desired>();
  for (const row of rows) {
    const subject = await store.load(row.subscription_id);
    const instance = subject?.instance;
    if (!subject || !instance || instance.subdomain !== row.subdomain) {
      result.set(row.subdomain, { phase: "deprovisioned", why: "billing" });
      continue;
    }
    const billing = billingPhase(subject.subscription, { now, gracePeriodMs: config.gracePeriodMs, retentionPeriodMs: config.retentionPeriodMs });
    const effective = effectivePhase(billing, instance.desiredState);
    const base = billing.phase === "none" ? "stopped" : billing.phase;
    const why = [effective.phase === base ? "billing" : "override", ...(instance.reconcilePaused ? ["paused"] : [])].join(", ");
    result.set(row.subdomain, { phase: effective.phase, why });
  }
  return result;
}

function printRows(rows: Row[], desired: ReadonlyMap<string, Desired>): void {
  const header = ["INSTANCE", "TIER", "BILLING", "DESIRED", "OBSERVED", "HEALTH", "HOST", "GEN", "WHY NOT CONVERGED"];
  const body = rows.map((row) => {
    const want = desired.get(row.subdomain);
    return [
      row.subdomain,
      row.tier,
      row.sub_status,
      want ? `${want.phase} (${want.why})` : "-",
      row.status,
      // The last probe of an instance that is not meant to run says nothing about it now.
      want?.phase === "running" ? row.health_status : "-",
      row.host ?? "-",
      `${row.observed_generation}/${row.generation}`,
      whyNotConverged(row),
    ];
  });
  printTable(header, body);
  if (rows.length === 0) process.stdout.write("(no instances)\n");
}

/** In words: the first thing that keeps this instance from its desired state. */
export function whyNotConverged(row: Pick<Row, "reconcile_paused" | "last_error" | "generation" | "observed_generation" | "pending_ops" | "conditions" | "status" | "health_status">): string {
  if (row.reconcile_paused) return "reconcile paused: the controller observes and acts on nothing";
  if (row.last_error) return `last pass failed: ${row.last_error}`;
  if (row.pending_ops > 0) return `${row.pending_ops} action(s) of unknown outcome: the next pass observes before acting`;
  if (row.generation !== row.observed_generation) return "desired state changed; the controller has not converged on it yet";
  const ready = row.conditions.find((condition) => condition.type === "Ready");
  if (ready && ready.status !== "True") return `${ready.reason}: ${ready.message}`;
  if (row.status === "running" && row.health_status !== "healthy" && row.health_status !== "unknown") return `running but ${row.health_status}`;
  return "-";
}

async function printInbox(sql: Sql): Promise<void> {
  const [inbox] = await sql<{ pending: number; dead: number; oldest: Date | null }[]>`
    select count(*) filter (where status in ('pending', 'failed'))::int as pending,
           count(*) filter (where status = 'dead')::int as dead,
           min(received_at) filter (where status in ('pending', 'failed')) as oldest
    from public.stripe_events`;
  if (!inbox) return;
  process.stdout.write(`\nstripe inbox: ${inbox.pending} pending${inbox.oldest ? ` (oldest received ${inbox.oldest.toISOString()})` : ""}, ${inbox.dead} dead-lettered\n`);
  if (inbox.dead === 0) return;
  const dead = await sql<{ id: string; type: string; last_error: string | null }[]>`
    select id, type, last_error from public.stripe_events where status = 'dead' order by received_at desc limit 10`;
  for (const event of dead) process.stdout.write(`  dead: ${event.id} ${event.type}: ${event.last_error ?? "(no error recorded)"}\n`);
}

async function printOutbox(sql: Sql, config: Config): Promise<void> {
  const outbox = await outboxSummary(sql);
  const via = config.smtp ? "SMTP" : "the log (SMTP_URL is not set)";
  const oldest = outbox.oldestPendingSeconds === null ? "" : ` (oldest queued ${Math.round(outbox.oldestPendingSeconds)} s ago)`;
  process.stdout.write(`email outbox: via ${via}, ${outbox.pending} pending${oldest}, ${outbox.failed} failed in the last 7 days\n`);
  const last = outbox.lastFailure;
  if (last) process.stdout.write(`  last failed: notification ${last.id} (${last.kind}): ${last.error ?? "(no error recorded)"}\n`);
}
