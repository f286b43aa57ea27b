/**
 * Apply: runs a plan one action at a time through the driver, each journaled before it runs and
 * finished after (STYLE rule 4). The first failure stops the plan: later actions depend on the
 * earlier ones, and the next pass plans again from a fresh observation.
 */
import { createHash } from "node:crypto";

import { attachHidden, OutcomeUnknownError } from "../errors.ts";
import { canonicalJson } from "./hash.ts";
import type { Action, Backups, Component, Driver, HostRef, Journal } from "./types.ts";

export interface ApplyContext {
  readonly driver: Driver;
  readonly journal: Journal;
  readonly backups: Backups;
  readonly host: HostRef;
  readonly instanceId: string;
  readonly epoch: number;
  readonly signal: AbortSignal;
  /** Called after each action that succeeded (metrics, logs). */
  readonly onApplied?: (action: Action) => void;
  /** Test seam for crash-safety tests: called after an action ran, and after it was journaled. */
  readonly faultHook?: (point: "executed" | "journaled") => void;
}

export async function applyPlan(actions: readonly Action[], ctx: ApplyContext): Promise<void> {
  for (const action of actions) {
    ctx.signal.throwIfAborted();
    await applyOne(action, ctx);
    ctx.onApplied?.(action);
  }
}

async function applyOne(action: Action, ctx: ApplyContext): Promise<void> {
  const id = await ctx.journal.begin({
    instanceId: ctx.instanceId,
    action: action.kind,
    target: targetOf(action),
    paramsHash: paramsHash(action),
    epoch: ctx.epoch,
  });
  try {
    await run(action, ctx);
  } catch (error) {
    const outcome = error instanceof OutcomeUnknownError ? "unknown" : "failed";
    await ctx.journal.finish(id, outcome, (error as Error).message, ctx.epoch).catch(() => {});
    if (error instanceof Error && !Object.hasOwn(error, FAILED_STEP)) attachHidden(error, { [FAILED_STEP]: `${action.kind} ${targetOf(action)}` });
    throw error;
  }
  ctx.faultHook?.("executed");
  await ctx.journal.finish(id, "succeeded", null, ctx.epoch);
  ctx.faultHook?.("journaled");
}

async function run(action: Action, ctx: ApplyContext): Promise<void> {
  switch (action.kind) {
    case "backup":
      return backup(action, ctx);
    case "createApp":
    case "ensureStorage":
    case "setConfig":
    case "setResources":
    case "setDomains":
    case "deployImage":
    case "enableTls":
    case "start":
    case "stop":
    case "restart":
    case "destroyApp":
    case "destroyStorage":
      return ctx.driver.apply(ctx.host, action, ctx.signal);
    default:
      return assertNever(action);
  }
}

/** Streams a tar.gz of the component's storage into the backup store; recorded only when whole. */
async function backup(action: Extract<Action, { kind: "backup" }>, ctx: ApplyContext): Promise<void> {
  const component = componentOf(action.app);
  const record = await ctx.backups.begin(ctx.instanceId, component, "pre_deprovision");
  const sink = await ctx.backups.open(ctx.instanceId, record);
  try {
    await ctx.driver.backup(ctx.host, action, sink.stream, ctx.signal);
    await sink.commit();
  } catch (error) {
    await sink.abort().catch(() => {});
    await ctx.backups.fail(record, (error as Error).message).catch(() => {});
    throw error;
  }
}

const FAILED_STEP = "failedStep";

/** The plan step an error of applyPlan failed in (`setConfig demo-backend`), for status messages. */
export function failedStepOf(error: Error): string | undefined {
  const step: unknown = (error as Error & { [FAILED_STEP]?: unknown })[FAILED_STEP];
  return typeof step === "string" ? step : undefined;
}

/** The Dokku app or storage entry an action touches: what the journal's `target` names. */
export function targetOf(action: Action): string {
  return action.kind === "destroyStorage" ? action.storage.entry : action.app;
}

/** A hash of the action's parameters; config values enter only through the hash. */
export function paramsHash(action: Action): string {
  return createHash("sha256").update(canonicalJson(action)).digest("hex").slice(0, 32);
}

function componentOf(app: string): Component {
  const suffix = app.slice(app.lastIndexOf("-") + 1);
  if (suffix === "matrix" || suffix === "backend" || suffix === "frontend") return suffix;
  throw new Error(`app ${app} is not an instance component`);
}

function assertNever(value: never): never {
  throw new Error(`unhandled action ${JSON.stringify(value)}`);
}
