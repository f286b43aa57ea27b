/**
 * One key end to end: read desired state, observe, plan, apply, write status (DESIGN sections 5
 * to 7). Level-triggered and idempotent: every pass re-reads everything, so it does not matter
 * which event enqueued the key, or how often.
 */
import { TerminalError } from "../errors.ts";
import { applyPlan, failedStepOf, targetOf } from "./apply.ts";
import { type ArchiveWorkContext, takeRequestedBackups, workRestore } from "./archive-work.ts";
import { type ConditionInput, convergedConditions, healthCondition, progressingStatus, ready, setConditions, synced } from "./conditions.ts";
import { billingPhase, desiredInstance } from "./desired.ts";
import { shallowMatches } from "./observe.ts";
import { type PassOptions, type PassOutcome, planned, type ReconcilerDeps, requeueFor } from "./pass.ts";
import { describePlan, driftKinds, plan } from "./plan.ts";
import { SettledPasses } from "./settled.ts";
import type { Action, Component, DesiredInstance, HostRef, InstanceRecord, InstanceStatus, ObservedApp, ReconcileSubject, StatusUpdate } from "./types.ts";

const NO_CAPACITY_RETRY_MS = 60_000;

/** What a pass on a placed instance acts on. */
interface PassWork {
  readonly host: HostRef;
  readonly actions: readonly Action[];
  readonly gate: { restart: Component[]; fail: string | null };
  readonly epoch: number;
  /** Every component existed, was deployed and ran before this pass, and the status said so. */
  readonly servingBefore: boolean;
  /** Apps that exist on the host now, and whether each runs (restores and requested backups need them). */
  readonly existing: Map<string, { running: boolean }>;
}

/** How a pass ended, for the status write. */
interface PassResult {
  readonly converged: boolean;
  readonly lastError: string | null;
  /** A terminal refusal, audited once per distinct message; null for anything else. */
  readonly refusal: { readonly reason: string; readonly message: string } | null;
  readonly urls: StatusUpdate["urls"];
}

export class Reconciler {
  /** When each instance's current unconverged generation was first seen (converge latency). */
  private readonly pendingSince = new Map<string, { generation: number; since: number }>();
  private readonly settledPasses: SettledPasses;

  constructor(private readonly deps: ReconcilerDeps) {
    this.settledPasses = new SettledPasses({ store: deps.store, observer: deps.observer, epoch: deps.epoch, now: deps.now });
  }

  /** A resync wave starts: settled checks read the database again (see settled.ts). */
  beginWave(): void {
    this.settledPasses.beginWave();
  }

  /**
   * For a resync (low-priority) pass: when the key is settled, the pass is done without SQL of
   * its own (see settled.ts) and this says when to look again; undefined: run `reconcile`.
   */
  settled(key: string, signal?: AbortSignal): Promise<{ requeueAfterMs?: number } | undefined> {
    return this.settledPasses.check(key, signal);
  }

  /**
   * The ReconcileFn of the controller: one pass, and when the answer changes by itself. `deep`
   * when an operator asked for this pass (drift is only seen by a deep observe).
   */
  async reconcile(key: string, signal: AbortSignal, options: { deep?: boolean } = {}): Promise<{ requeueAfterMs?: number; outcome: PassOutcome }> {
    const outcome = await this.pass(key, { signal, ...(options.deep ? { deep: true } : {}) });
    return { ...requeueFor(outcome, this.deps.now()), outcome };
  }

  async pass(key: string, options: PassOptions): Promise<PassOutcome> {
    const now = this.deps.now();
    if (!options.dryRun) this.settledPasses.forget(key);
    let subject = await this.deps.store.load(key);
    if (!subject) return { kind: "gone" };
    if (!subject.instance) {
      const billing = billingPhase(subject.subscription, { now, ...this.deps.desiredOptions });
      if (billing.phase !== "running" || subject.instanceCount > 0 || options.dryRun) {
        const reason = subject.instanceCount > 0 ? "the subscription's instance was deprovisioned" : billing.reason;
        return { kind: "no-instance", reason, changesAt: billing.changesAt };
      }
      await this.deps.store.provision(key);
      subject = await this.deps.store.load(key);
      if (!subject?.instance) return { kind: "gone" };
    }
    return this.passForInstance(subject as ReconcileSubject & { instance: InstanceRecord }, now, options);
  }

  private async passForInstance(subject: ReconcileSubject & { instance: InstanceRecord }, now: Date, options: PassOptions): Promise<PassOutcome> {
    const instance = subject.instance;
    const desired = await this.desiredOrRefusal(subject, now, options);
    if (!subject.host) {
      const placed = await this.placeIfNeeded(subject, desired, options);
      if (!placed) return this.withoutHost(instance, desired, now, options);
      // Placement bumped the generation: continue on a fresh read, so this pass can record
      // convergence on the current generation instead of leaving it to another pass.
      const fresh = await this.deps.store.load(subject.subscription.id);
      if (!fresh?.instance || !fresh.host) return { kind: "gone" };
      return this.passForInstance(fresh as ReconcileSubject & { instance: InstanceRecord }, now, options);
    }
    const host = subject.host;
    const epoch = options.dryRun ? 0 : this.requireEpoch();
    const unknown = options.dryRun ? 0 : await this.deps.journal.recoverPending(instance.id, epoch);
    let found;
    try {
      found = await this.observeAndPlan(instance, desired, host, unknown > 0, now, options);
    } catch (error) {
      // A pass that cannot even observe (host down) is a failed pass too: `status` names it.
      if (!options.dryRun) await this.recordFailure(instance, desired, error as Error, now, { keep: instance.status });
      throw error;
    }
    const { gate, observed, actions, shallow } = found;
    if (options.dryRun) return planned(instance, desired, actions, false, instance.status);
    // An unknown outcome forced a deep observation (observed is set): the plan made from it settles them.
    if (unknown > 0 && observed) await this.deps.journal.resolveUnknown(instance.id, actions.map((action) => ({ action: action.kind, target: targetOf(action) })), epoch);
    if (observed && instance.generation === instance.observedGeneration) {
      for (const kind of driftKinds(desired, observed)) this.deps.onDrift?.(kind);
    }
    // Whether the instance serves now, whatever this pass does: a failed pass keeps `running`
    // only then, so a half-provisioned instance is never shown running (or welcomed).
    const servingBefore = instance.status === "running" && desired.phase === "running" && shallowMatches(desired, shallow);
    return this.act(subject, desired, { host, actions, gate, epoch, servingBefore, existing: new Map([...shallow].map(([app, observed]) => [app, { running: observed.running }])) }, now, options.signal);
  }

  /**
   * The desired state, or the refusal to compute it (an operator override, image or name the
   * controller will not send) written to the instance as a terminal error before it is rethrown:
   * `status` shows it within the pass, and the controller stops retrying until the input changes.
   */
  private async desiredOrRefusal(subject: ReconcileSubject & { instance: InstanceRecord }, now: Date, options: PassOptions): Promise<DesiredInstance> {
    try {
      return desiredInstance(subject.subscription, subject.instance, { now, ...this.deps.desiredOptions });
    } catch (error) {
      if (error instanceof TerminalError && !options.dryRun) {
        const refusal = { reason: error.reason, message: error.message };
        const conditions = [synced("False", error.reason, error.message), ready("False", error.reason, error.message)];
        await this.saveStatus(subject.instance, "error", conditions, { converged: false, lastError: error.message, refusal, urls: null }, now);
      }
      throw error;
    }
  }

  private async observeAndPlan(instance: InstanceRecord, desired: DesiredInstance, host: HostRef, unknownOutcome: boolean, now: Date, options: PassOptions) {
    const shallow = await this.deps.observer.instance(host, desired, options.signal);
    const gate = await this.healthGate(instance, desired, now, options);
    const deepReason = this.deps.observer.deepReason(instance.id, desired, shallow, {
      generationChanged: instance.generation !== instance.observedGeneration,
      unknownOutcome,
      // Teardown always plans: its last steps (storage) are invisible to the shallow view.
      // A health restart must be planned even when the shallow view looks converged.
      requested: options.deep === true || desired.phase === "deprovisioned" || gate.restart.length > 0,
    });
    const observed = deepReason ? await this.deps.observer.deep(instance.id, host, desired, shallow, options.signal) : undefined;
    const actions = observed ? await this.planFor(instance, desired, observed, gate.restart) : [];
    return { gate, observed, actions, shallow };
  }

  private async act(subject: ReconcileSubject & { instance: InstanceRecord }, desired: DesiredInstance, work: PassWork, now: Date, signal: AbortSignal): Promise<PassOutcome> {
    const { host, actions, gate, epoch, existing } = work;
    const instance = subject.instance;
    if (desired.paused) {
      await this.writeStatus(instance, desired, instance.status, [synced("False", "ReconcilePaused", "reconcile_paused is set: observing only")], false, null, now);
      return planned(instance, desired, [], false, instance.status);
    }
    if (gate.fail) {
      await this.writeStatus(instance, desired, "failed", [ready("False", "RestartsExhausted", gate.fail)], false, gate.fail, now);
      return planned(instance, desired, [], false, "failed");
    }
    let restored: ConditionInput[] = [];
    const applyContext = {
      driver: this.deps.driver,
      journal: this.deps.journal,
      backups: this.deps.backups,
      ...(this.deps.restores ? { restores: this.deps.restores } : {}),
      host,
      instanceId: instance.id,
      epoch,
      signal,
      ...(this.deps.faultHook ? { faultHook: this.deps.faultHook } : {}),
    };
    try {
      restored = await this.restoreWork({ ...applyContext, desired, existing });
      await applyPlan(actions, applyContext);
    } catch (error) {
      await this.recordFailure(instance, desired, error as Error, now, { servingBefore: work.servingBefore });
      throw error;
    } finally {
      if (actions.length > 0) this.deps.observer.changed(host.id, [...desired.apps.map((app) => app.app), ...actions.map((action) => action.app)]);
    }
    if (gate.restart.length > 0) await this.deps.health?.restarted(instance, gate.restart, now);
    const tookBackup = actions.some((action) => action.kind === "backup");
    for (const action of actions) if (action.kind === "createApp") existing.set(action.app, { running: false });
    const archived = await this.backupWork({ ...applyContext, desired, existing }, desired);
    if (tookBackup || archived.backupsCompleted > 0) this.deps.onBackedUp?.(desired.tier);
    const status = tookBackup ? "deprovisioning" : desired.phase;
    await this.writeStatus(instance, desired, status, [...convergedConditions(desired, tookBackup), ...restored, ...archived.conditions], !tookBackup, null, now);
    if (status === desired.phase) this.rememberSettled(subject, desired, host, epoch);
    return planned(instance, desired, actions, true, status);
  }

  /** A pass that converged: the next resync pass may be answered in memory (settled.ts). */
  private rememberSettled(subject: ReconcileSubject & { instance: InstanceRecord }, desired: DesiredInstance, host: HostRef, epoch: number): void {
    const { instance, subscription } = subject;
    if (desired.phase === "deprovisioned") return;
    this.settledPasses.remember(subscription.id, {
      instanceId: instance.id,
      generation: instance.generation,
      host,
      status: desired.phase,
      healthStatus: instance.healthStatus,
      cancelAtPeriodEnd: subscription.cancelAtPeriodEnd,
      currentPeriodEnd: subscription.currentPeriodEnd,
      changesAt: desired.changesAt,
      phase: desired.phase,
      apps: desired.apps.map((app) => app.app),
      epoch,
    });
  }

  /**
   * The instance's restore, before its plan (never during teardown; the plan would otherwise
   * restart an app the restore stopped). A transient failure fails the pass; the next pass
   * resumes the restore where its row says it stands.
   */
  private async restoreWork(ctx: Omit<ArchiveWorkContext, "restores">): Promise<ConditionInput[]> {
    const restores = this.deps.restores;
    if (!restores || ctx.desired.phase === "deprovisioned") return [];
    // A restore stops and starts its app: then the next pass reads the instance's apps again.
    const touched = (): void => this.deps.observer.changed(ctx.host.id, ctx.desired.apps.map((app) => app.app));
    const restored = await workRestore({ ...ctx, restores }).catch((error: unknown) => {
      touched();
      throw error;
    });
    if (restored.length > 0) touched();
    return restored;
  }

  /** Requested backups, once the plan converged (never during teardown). */
  private async backupWork(ctx: Omit<ArchiveWorkContext, "restores">, desired: DesiredInstance): Promise<{ conditions: ConditionInput[]; backupsCompleted: number }> {
    const restores = this.deps.restores;
    if (!restores || desired.phase === "deprovisioned") return { conditions: [], backupsCompleted: 0 };
    return takeRequestedBackups({ ...ctx, restores });
  }

  private async planFor(instance: InstanceRecord, desired: DesiredInstance, observed: ReadonlyMap<string, ObservedApp>, restart: Component[]): Promise<Action[]> {
    const backedUp = desired.phase === "deprovisioned" ? await this.deps.backups.completedTeardownBackups(instance.id, null) : new Set<Component>();
    const withStorage = desired.apps.filter((app) => app.storage !== null && observed.has(app.app));
    const backupCompleted = withStorage.every((app) => backedUp.has(app.component));
    const storageEntries = desired.phase === "deprovisioned" ? await this.remainingStorage(instance.id, desired) : undefined;
    const backedUpApps = new Set(desired.apps.filter((app) => backedUp.has(app.component)).map((app) => app.app));
    return plan({ desired, observed, storageEntries, backupCompleted, backedUp: backedUpApps, restart, allowOrphanDestroy: this.deps.allowOrphanDestroy });
  }

  /**
   * Storage entries teardown must still destroy: every entry of the instance except those the
   * journal shows destroyed. The shallow view cannot see storage, and destroying a missing entry
   * is success, so a crash between destroyApp and destroyStorage leaks nothing.
   */
  private async remainingStorage(instanceId: string, desired: DesiredInstance): Promise<Set<string>> {
    const destroyed = await this.deps.journal.succeededTargets(instanceId, "destroyStorage");
    return new Set(desired.apps.flatMap((app) => (app.storage && !destroyed.has(app.storage.entry) ? [app.storage.entry] : [])));
  }

  private async healthGate(instance: InstanceRecord, desired: DesiredInstance, now: Date, options: PassOptions): Promise<{ restart: Component[]; fail: string | null }> {
    if (!this.deps.health || options.dryRun || desired.paused) return { restart: [], fail: null };
    return this.deps.health.decide(instance, desired.phase === "running", now);
  }

  private async placeIfNeeded(subject: ReconcileSubject & { instance: InstanceRecord }, desired: DesiredInstance, options: PassOptions): Promise<HostRef | undefined> {
    if (desired.phase !== "running" || options.dryRun || desired.paused) return undefined;
    return this.deps.store.place(subject.instance.id, subject.subscription.region);
  }

  /** An instance with no host: nothing runs anywhere, so stopping or tearing down is immediate. */
  private async withoutHost(instance: InstanceRecord, desired: DesiredInstance, now: Date, options: PassOptions): Promise<PassOutcome> {
    if (desired.phase === "running" && !desired.paused) {
      if (!options.dryRun) {
        await this.writeStatus(instance, desired, "pending", [ready("False", "NoHostCapacity", "no enabled Dokku host has free capacity in this region")], false, "no host capacity", now);
      }
      return { kind: "waiting", reason: "no enabled Dokku host has free capacity", retryAfterMs: NO_CAPACITY_RETRY_MS };
    }
    if (!options.dryRun && !desired.paused) {
      await this.writeStatus(instance, desired, desired.phase, convergedConditions(desired, false), true, null, now);
    }
    return planned(instance, desired, [], !options.dryRun, desired.phase);
  }

  private requireEpoch(): number {
    const epoch = this.deps.epoch();
    if (epoch === undefined) throw new Error("not the leader: this replica does not act on hosts");
    return epoch;
  }

  /**
   * A failed pass: a terminal error is a refusal (status `error`, audited once per distinct
   * message); any other failure leaves the instance progressing, `running` only when it served
   * before the pass; `keep` keeps the status (nothing was done: the host did not answer). The
   * message names the step that failed.
   */
  private async recordFailure(instance: InstanceRecord, desired: DesiredInstance, error: Error, now: Date, how: { servingBefore?: boolean; keep?: InstanceStatus }): Promise<void> {
    const terminal = error instanceof TerminalError;
    const reason = terminal ? error.reason : how.keep ? "ObserveFailed" : "ApplyFailed";
    const step = failedStepOf(error);
    const message = step ? `${step}: ${error.message}` : error.message;
    const status = terminal ? "error" : (how.keep ?? progressingStatus(desired.phase, how.servingBefore === true));
    const conditions = [synced("False", reason, message), ready("False", reason, message), healthCondition(instance.healthStatus, desired.phase)];
    const refusal = terminal ? { reason, message } : null;
    await this.saveStatus(instance, status, conditions, { converged: false, lastError: message, refusal, urls: urlsOf(desired) }, now).catch(() => {});
  }

  private async writeStatus(instance: InstanceRecord, desired: DesiredInstance, status: InstanceStatus, updates: ConditionInput[], converged: boolean, lastError: string | null, now: Date): Promise<void> {
    const conditions = [...updates, healthCondition(instance.healthStatus, desired.phase)];
    await this.saveStatus(instance, status, conditions, { converged, lastError, refusal: null, urls: urlsOf(desired) }, now);
  }

  private async saveStatus(instance: InstanceRecord, status: InstanceStatus, updates: ConditionInput[], result: PassResult, now: Date): Promise<void> {
    await this.deps.store.writeStatus(instance.id, instance.status, {
      status,
      conditions: setConditions(instance.conditions, updates, now, instance.generation),
      observedGeneration: result.converged ? instance.generation : null,
      lastError: result.lastError,
      refusal: result.refusal,
      urls: result.urls,
    });
    this.trackConvergence(instance, result.converged, now);
  }

  private trackConvergence(instance: InstanceRecord, converged: boolean, now: Date): void {
    const pending = this.pendingSince.get(instance.id);
    if (converged) {
      if (instance.generation !== instance.observedGeneration) {
        const since = pending?.generation === instance.generation ? pending.since : now.getTime();
        this.deps.onConverged?.(Math.max(0, this.deps.now().getTime() - since) / 1000);
      }
      this.pendingSince.delete(instance.id);
    } else if (!pending || pending.generation !== instance.generation) {
      this.pendingSince.set(instance.id, { generation: instance.generation, since: now.getTime() });
    }
  }
}

/** Public URLs from the desired apps' domains; https only when TLS is on. */
function urlsOf(desired: DesiredInstance): { frontend: string; backend: string; matrix: string } {
  const url = (component: Component): string => {
    const app = desired.apps.find((candidate) => candidate.component === component);
    return app?.domains[0] ? `${app.tls ? "https" : "http"}://${app.domains[0]}` : "";
  };
  return { frontend: url("frontend"), backend: url("backend"), matrix: url("matrix") };
}

export type { PassOutcome } from "./pass.ts";
export { describePlan };
