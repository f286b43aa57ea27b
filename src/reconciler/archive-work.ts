/**
 * Work on an instance's data that is requested rather than converged: requested backups (manual
 * and scheduled) and restores. Run by the leader's pass of the instance after its plan applied,
 * through the same journaled apply as every other action, so a crash at any step is recovered by
 * the next pass:
 * - a backup interrupted mid-upload leaves its row `in_progress`; the next pass claims it again
 *   and uploads a fresh object under the same key (the store never shows a partial object);
 * - a restore is safety backup → stop → replace storage → start. Each step is skipped once done:
 *   the safety backup is recorded on the restore row before it is taken (and counts once it
 *   completed), the replace step marks the row itself, and stop and start follow what the host
 *   shows. So a daemon killed after any step makes progress on its next start. Restores run
 *   before the pass's plan, so the plan never restarts an app a restore is working on.
 */
import { TerminalError } from "../errors.ts";
import { type ApplyContext,applyPlan } from "./apply.ts";
import type { ConditionInput } from "./conditions.ts";
import type { Action, Backups, DesiredApp, DesiredInstance, Restores } from "./types.ts";

export interface ArchiveWorkContext extends ApplyContext {
  readonly desired: DesiredInstance;
  readonly backups: Backups;
  readonly restores: Restores;
  /** Apps that exist on the host now, and whether each runs. */
  readonly existing: ReadonlyMap<string, { readonly running: boolean }>;
}

export interface ArchiveWorkResult {
  readonly conditions: ConditionInput[];
  readonly backupsCompleted: number;
}

/** The apps whose storage a backup can contain: existing apps with storage, in provisioning order. */
function appsWithStorage(ctx: ArchiveWorkContext): (DesiredApp & { storage: NonNullable<DesiredApp["storage"]> })[] {
  return ctx.desired.apps.filter((app): app is DesiredApp & { storage: NonNullable<DesiredApp["storage"]> } => app.storage !== null && ctx.existing.has(app.app));
}

/** Takes every requested backup. A failed backup is recorded on its row and in `BackedUp`; the pass goes on. */
export async function takeRequestedBackups(ctx: ArchiveWorkContext): Promise<ArchiveWorkResult> {
  const apps = appsWithStorage(ctx);
  const records = await ctx.backups.claimRequested(ctx.instanceId, apps.map((app) => app.component));
  const conditions: ConditionInput[] = [];
  let completed = 0;
  for (const record of records) {
    const app = apps.find((candidate) => candidate.component === record.component)!;
    try {
      await applyPlan([{ kind: "backup", app: app.app, storage: app.storage, backupType: record.type, backupId: record.id }], ctx);
      completed += 1;
      conditions.push({ type: "BackedUp", status: "True", reason: "BackupCompleted", message: `${record.type} backup ${record.id} of ${record.component} completed` });
    } catch (error) {
      ctx.signal.throwIfAborted();
      conditions.push({ type: "BackedUp", status: "False", reason: "BackupFailed", message: `${record.type} backup ${record.id} of ${record.component} failed: ${(error as Error).message}` });
    }
  }
  return { conditions: conditions.slice(-1), backupsCompleted: completed };
}

/**
 * Works the instance's next restore, if any. A restore that cannot succeed (no such component,
 * a corrupt backup) is finished as failed; a transient failure is thrown, and the next pass
 * resumes the restore where its row says it stands.
 */
export async function workRestore(ctx: ArchiveWorkContext): Promise<ConditionInput[]> {
  const request = await ctx.restores.next(ctx.instanceId);
  if (!request) return [];
  const app = appsWithStorage(ctx).find((candidate) => candidate.component === request.component);
  if (!app) {
    return finish(ctx, request.id, `component ${request.component} of this instance has no storage on its host to restore into`);
  }
  try {
    if (!request.safetyCompleted) await takeSafetyBackup(ctx, request.id, app);
    const running = ctx.existing.get(app.app)?.running === true;
    const steps: Action[] = [
      ...(running && !request.replaced ? [{ kind: "stop", app: app.app } as const] : []),
      ...(request.replaced ? [] : [{ kind: "restore", app: app.app, storage: app.storage, backupId: request.backupId, restoreId: request.id } as const]),
      ...(ctx.desired.phase === "running" && (!running || !request.replaced) ? [{ kind: "start", app: app.app } as const] : []),
    ];
    await applyPlan(steps, ctx);
  } catch (error) {
    ctx.signal.throwIfAborted();
    if (!(error instanceof TerminalError)) throw error;
    return finish(ctx, request.id, error.message);
  }
  return finish(ctx, request.id, null);
}

/** Begins the safety backup, records it on the restore, then takes it. */
async function takeSafetyBackup(ctx: ArchiveWorkContext, restoreId: string, app: DesiredApp & { storage: NonNullable<DesiredApp["storage"]> }): Promise<void> {
  const record = await ctx.backups.begin(ctx.instanceId, app.component, "pre_restore");
  await ctx.restores.started(restoreId, record.id);
  try {
    await applyPlan([{ kind: "backup", app: app.app, storage: app.storage, backupType: "pre_restore", backupId: record.id }], ctx);
  } catch (error) {
    if (!(error instanceof TerminalError)) throw error;
    throw new TerminalError("SafetyBackupFailed", `the safety backup of the current data failed, so nothing was restored: ${error.message}`, { cause: error });
  }
}

async function finish(ctx: ArchiveWorkContext, id: string, error: string | null): Promise<ConditionInput[]> {
  await ctx.restores.finished(id, error);
  return error === null
    ? [{ type: "Restored", status: "True", reason: "RestoreCompleted", message: `restore ${id} completed` }]
    : [{ type: "Restored", status: "False", reason: "RestoreFailed", message: `restore ${id} failed: ${error}` }];
}

