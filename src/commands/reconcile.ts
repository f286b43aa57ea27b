/**
 * `mindroom-reconciler reconcile ID`: one deep pass (config, domains and storage read back, so
 * drift is repaired) for an instance (id or subdomain) or a subscription (id or Stripe `sub_...`),
 * now. When a daemon leads, the request goes to it through the database (NOTIFY) and this command
 * waits for its answer; otherwise it takes the lease for the pass itself, so it never acts beside
 * a leader.
 */
import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import { coerceError } from "../errors.ts";
import { describePlan } from "../reconciler/plan.ts";
import type { InstanceKey } from "../state/instances.ts";
import { acquireOrRenew, RECONCILER_LEASE, release } from "../state/lease.ts";
import { parseReconcileAnswer, type ReconcileAnswer, RECONCILED_CHANNEL, sendReconcileRequest } from "../state/reconcile-requests.ts";
import { type CommandContext, withDatabase } from "./common.ts";
import { openControllerContext, resolveKey } from "./controller-context.ts";

/** A deep pass reads every component back over SSH: allow for a slow host. */
const WAIT_FOR_LEADER_MS = 120_000;

export async function run(argv: string[]): Promise<number> {
  const [id, ...rest] = argv;
  if (!id || rest.length > 0) {
    process.stderr.write("usage: mindroom-reconciler reconcile INSTANCE_ID|SUBDOMAIN|SUBSCRIPTION_ID|sub_...\n");
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
    if (!lease.leader) return viaLeader(ctx.db.sql, key, lease.holder);
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

/**
 * A daemon leads: ask it for a deep pass (state/reconcile-requests.ts) and print its answer. The
 * answer comes from a pass that started after the request, so it reflects drift repaired now.
 */
async function viaLeader(sql: Sql, key: InstanceKey, leader: string | null): Promise<number> {
  const name = key.subdomain ?? key.subscriptionId;
  const answer = await askLeader(sql, key, () => process.stdout.write(`asked the running controller (${leader ?? "leader"}) for a deep pass of ${name}\n`));
  if (!answer) {
    process.stdout.write(`the controller did not answer within ${WAIT_FOR_LEADER_MS / 1000} s; see \`mindroom-reconciler status\`\n`);
    return 1;
  }
  if (!answer.ok) {
    process.stdout.write(`${name}: reconcile failed on the controller (${leader ?? "leader"}): ${answer.lines.join("; ")}\n`);
    return 1;
  }
  process.stdout.write(`${name}: ${answer.status ?? "-"} (deep pass by the controller ${leader ?? "leader"}); ${answer.lines.length} action${answer.lines.length === 1 ? "" : "s"} applied\n`);
  for (const line of answer.lines) process.stdout.write(`  done: ${line}\n`);
  return 0;
}

/** Sends the request once listening for its answer; undefined when none came in time. */
async function askLeader(sql: Sql, key: InstanceKey, onSent: () => void): Promise<ReconcileAnswer | undefined> {
  const request = randomUUID();
  let answered: (answer: ReconcileAnswer) => void = () => {};
  const answer = new Promise<ReconcileAnswer>((resolve) => (answered = resolve));
  const listener = await sql.listen(RECONCILED_CHANNEL, (payload) => {
    const parsed = parseReconcileAnswer(payload);
    if (parsed?.request === request) answered(parsed);
  });
  const timer = new AbortController();
  try {
    await sendReconcileRequest(sql, { key: key.subscriptionId, request, deep: true });
    onSent();
    const timeout = sleep(WAIT_FOR_LEADER_MS, undefined, { signal: timer.signal }).then(() => undefined, () => undefined);
    return await Promise.race([answer, timeout]);
  } finally {
    timer.abort();
    await listener.unlisten();
  }
}
