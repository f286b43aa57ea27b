/**
 * Apply: runs a plan one action at a time through the driver, each journaled before it runs and
 * finished after (STYLE rule 4); an action's success is recorded in the same round trip as the
 * next action's intent (or at the end of the plan). The first failure stops the plan: later actions depend on the
 * earlier ones, and the next pass plans again from a fresh observation.
 */
import { createHash } from "node:crypto";

import { attachHidden, OutcomeUnknownError } from "../errors.ts";
import { canonicalJson } from "./hash.ts";
import type { Action, Backups, Component, Driver, HostRef, Journal, Restores } from "./types.ts";

export interface ApplyContext {
  readonly driver: Driver;
  readonly journal: Journal;
  readonly backups: Backups;
  /** Needed only by plans with a `restore` action. */
  readonly restores?: Restores;
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
  const journal: JournalCursor = { unrecorded: undefined };
  try {
    for (const action of actions) {
      ctx.signal.throwIfAborted();
      await applyOne(action, ctx, journal);
      ctx.onApplied?.(action);
    }
  } catch (error) {
    if (journal.unrecorded !== undefined) await ctx.journal.finish(journal.unrecorded, "succeeded", null, ctx.epoch).catch(() => {});
    throw error;
  }
  if (journal.unrecorded !== undefined) {
    await ctx.journal.finish(journal.unrecorded, "succeeded", null, ctx.epoch);
    ctx.faultHook?.("journaled");
  }
}

/** The journal row of the last action that succeeded, until its success is recorded. */
interface JournalCursor {
  unrecorded: number | undefined;
}

/**
 * Journals the action's intent, together with the success of the action before it (one round
 * trip per action), then runs it. A failure is recorded at once; a success is left to the next
 * intent or to the end of the plan.
 */
async function applyOne(action: Action, ctx: ApplyContext, journal: JournalCursor): Promise<void> {
  const entry = { instanceId: ctx.instanceId, action: action.kind, target: targetOf(action), paramsHash: paramsHash(action), epoch: ctx.epoch };
  const previous = journal.unrecorded;
  const id = previous === undefined ? await ctx.journal.begin(entry) : await ctx.journal.advance(previous, entry);
  journal.unrecorded = undefined;
  if (previous !== undefined) ctx.faultHook?.("journaled");
  try {
    await run(action, ctx);
  } catch (error) {
    const outcome = error instanceof OutcomeUnknownError ? "unknown" : "failed";
    await ctx.journal.finish(id, outcome, (error as Error).message, ctx.epoch).catch(() => {});
    if (error instanceof Error && !Object.hasOwn(error, FAILED_STEP)) attachHidden(error, { [FAILED_STEP]: `${action.kind} ${targetOf(action)}` });
    throw error;
  }
  ctx.faultHook?.("executed");
  journal.unrecorded = id;
}

async function run(action: Action, ctx: ApplyContext): Promise<void> {
  switch (action.kind) {
    case "backup":
      return backup(action, ctx);
    case "restore":
      return restore(action, ctx);
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
  const record = action.backupId
    ? { id: action.backupId, component, type: action.backupType }
    : await ctx.backups.begin(ctx.instanceId, component, action.backupType);
  const sink = await ctx.backups.open(ctx.instanceId, record);
  try {
    await ctx.driver.transfer(ctx.host, { action, sink: sink.stream }, ctx.signal);
    await sink.commit();
  } catch (error) {
    await sink.abort().catch(() => {});
    await ctx.backups.fail(record, (error as Error).message).catch(() => {});
    throw error;
  }
}

/** Replaces the component's storage with a backup, read back and verified before anything is touched. */
async function restore(action: Extract<Action, { kind: "restore" }>, ctx: ApplyContext): Promise<void> {
  if (!ctx.restores) throw new Error("restore planned without a restore store");
  const source = await ctx.restores.openVerified(action.backupId, ctx.signal);
  await ctx.driver.transfer(ctx.host, { action, source }, ctx.signal);
  await ctx.restores.replaced(action.restoreId);
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
