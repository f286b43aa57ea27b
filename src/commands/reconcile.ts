/**
 * `mindroom-reconciler reconcile ID`: one pass for an instance (id or subdomain) or a
 * subscription, now. When a daemon leads, the request goes to it through the database (NOTIFY)
 * and this command waits for the instance's status to settle; otherwise it takes the lease for
 * the pass itself, so it never acts beside a leader.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import { coerceError } from "../errors.ts";
import { describePlan } from "../reconciler/plan.ts";
import { acquireOrRenew, RECONCILER_LEASE, release } from "../state/lease.ts";
import { type CommandContext, withDatabase } from "./common.ts";
import { openControllerContext, resolveKey } from "./controller-context.ts";

const WAIT_FOR_LEADER_MS = 60_000;

export async function run(argv: string[]): Promise<number> {
  const [id, ...rest] = argv;
  if (!id || rest.length > 0) {
    process.stderr.write("usage: mindroom-reconciler reconcile INSTANCE_ID|SUBDOMAIN|SUBSCRIPTION_ID\n");
    return 2;
  }
  return withDatabase(async (ctx) => {
    const key = await resolveKey(ctx.db.sql, id);
    if (!key) {
      process.stderr.write(`no instance or subscription matches ${JSON.stringify(id)}\n`);
      return 2;
    }
    const holder = `cli-reconcile-${process.pid}`;
    const lease = await acquireOrRenew(ctx.db.sql, { name: RECONCILER_LEASE, holder, ttlMs: 120_000 });
    if (!lease.leader) return viaLeader(ctx.db.sql, key.subscriptionId, lease.holder);
    try {
      return await passNow(ctx, key.subscriptionId, lease.epoch);
    } finally {
      await release(ctx.db.sql, { name: RECONCILER_LEASE, holder });
    }
  });
}

async function passNow(ctx: CommandContext, subscriptionId: string, epoch: number): Promise<number> {
  const controller = await openControllerContext(ctx, () => epoch);
  try {
    const outcome = await controller.reconciler.pass(subscriptionId, { deep: true, signal: AbortSignal.timeout(600_000) });
    if (outcome.kind !== "planned") {
      process.stdout.write(`${subscriptionId}: ${outcome.kind === "gone" ? "subscription not found" : outcome.reason}\n`);
      return outcome.kind === "waiting" ? 1 : 0;
    }
    process.stdout.write(`${outcome.desired.subdomain}: ${outcome.status} (desired ${outcome.desired.phase}); ${outcome.actions.length} action${outcome.actions.length === 1 ? "" : "s"} applied\n`);
    for (const line of describePlan(outcome.actions)) process.stdout.write(`  done: ${line}\n`);
    return 0;
  } catch (error) {
    process.stdout.write(`reconcile failed: ${coerceError(error).message}\n`);
    return 1;
  } finally {
    await controller.close();
  }
}

/** A daemon leads: ask it (the instances trigger's NOTIFY) and report what it wrote. */
async function viaLeader(sql: Sql, subscriptionId: string, leader: string | null): Promise<number> {
  const before = await statusOf(sql, subscriptionId);
  await sql`select pg_notify('mindroom_reconcile', ${subscriptionId})`;
  process.stdout.write(`asked the running controller (${leader ?? "leader"}) to reconcile ${subscriptionId}\n`);
  const deadline = Date.now() + WAIT_FOR_LEADER_MS;
  while (Date.now() < deadline) {
    await sleep(500);
    const now = await statusOf(sql, subscriptionId);
    if (now && (now.updatedAt !== before?.updatedAt || now.converged)) {
      process.stdout.write(`${now.subdomain}: ${now.status}${now.lastError ? `; last error: ${now.lastError}` : ""}\n`);
      return now.lastError ? 1 : 0;
    }
  }
  process.stdout.write("the controller did not report within 60 s; see `mindroom-reconciler status`\n");
  return 1;
}

async function statusOf(sql: Sql, subscriptionId: string): Promise<{ subdomain: string; status: string; lastError: string | null; updatedAt: string; converged: boolean } | undefined> {
  const [row] = await sql<{ subdomain: string; status: string; last_error: string | null; updated_at: Date; converged: boolean }[]>`
    select subdomain, status::text as status, last_error, updated_at, generation = observed_generation as converged
    from public.instances where subscription_id = ${subscriptionId} order by created_at desc limit 1`;
  return row ? { subdomain: row.subdomain, status: row.status, lastError: row.last_error, updatedAt: row.updated_at.toISOString(), converged: row.converged } : undefined;
}
