/**
 * `mindroom-reconciler plan [--instance ID]`: what a reconcile pass would do now, as a readable
 * diff per instance, like `kubectl diff`: exit 0 when nothing would change, 1 when something
 * would, 2 on error. It observes the hosts (deeply) but changes nothing.
 */
import { parseArgs } from "node:util";

import { coerceError } from "../errors.ts";
import type { PassOutcome } from "../reconciler/pass.ts";
import { describePlan } from "../reconciler/plan.ts";
import { withDatabase } from "./common.ts";
import { allKeys, openControllerContext, resolveKey } from "./controller-context.ts";

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { instance: { type: "string" } }, strict: true });
  return withDatabase(async (ctx) => {
    const keys = values.instance ? await resolveOne(ctx.db.sql, values.instance) : await allKeys(ctx.db.sql);
    if (!keys) return 2;
    const controller = await openControllerContext(ctx, () => undefined);
    try {
      let changes = 0;
      let errors = 0;
      for (const key of keys) {
        try {
          const outcome = await controller.reconciler.pass(key, { dryRun: true, deep: true, signal: AbortSignal.timeout(120_000) });
          changes += printOutcome(key, outcome);
        } catch (error) {
          errors += 1;
          process.stdout.write(`! ${key}: cannot plan: ${coerceError(error).message}\n`);
        }
      }
      if (!values.instance) await printOrphans(controller);
      process.stdout.write(`\n${changes} change${changes === 1 ? "" : "s"} planned across ${keys.length} subscription${keys.length === 1 ? "" : "s"}${errors ? `, ${errors} could not be planned` : ""}\n`);
      return errors > 0 ? 2 : changes > 0 ? 1 : 0;
    } finally {
      await controller.close();
    }
  });
}

/** Orphans are reported, never destroyed by a pass unless ALLOW_ORPHAN_DESTROY is set. */
async function printOrphans(controller: { orphans(): Promise<{ host: string; apps: string[] }[]> }): Promise<void> {
  try {
    for (const { host, apps } of await controller.orphans()) {
      for (const app of apps) process.stdout.write(`! orphan app ${app} on host ${host}: belongs to no instance (reported, not destroyed)\n`);
    }
  } catch (error) {
    process.stdout.write(`! could not check hosts for orphans: ${coerceError(error).message}\n`);
  }
}

async function resolveOne(sql: Parameters<typeof resolveKey>[0], id: string): Promise<string[] | undefined> {
  const key = await resolveKey(sql, id);
  if (!key) process.stderr.write(`no instance or subscription matches ${JSON.stringify(id)}\n`);
  return key ? [key.subscriptionId] : undefined;
}

/** Prints one subscription's plan; returns how many actions it has. */
function printOutcome(key: string, outcome: PassOutcome): number {
  switch (outcome.kind) {
    case "gone":
      process.stdout.write(`  ${key}: subscription not found\n`);
      return 0;
    case "no-instance":
      process.stdout.write(`  ${key}: no instance (${outcome.reason})\n`);
      return 0;
    case "waiting":
      process.stdout.write(`~ ${key}: waiting: ${outcome.reason}\n`);
      return 1;
    case "planned": {
      const { desired, actions } = outcome;
      const mark = actions.length > 0 ? "~" : "=";
      process.stdout.write(`${mark} ${desired.subdomain} (instance ${desired.instanceId}): ${outcome.status} -> ${desired.phase}${desired.paused ? " [reconcile paused]" : ""}\n`);
      process.stdout.write(`    why: ${desired.reason}\n`);
      for (const line of describePlan(actions)) process.stdout.write(`    ${line}\n`);
      if (actions.length === 0) process.stdout.write("    (nothing to do)\n");
      return actions.length;
    }
  }
}
