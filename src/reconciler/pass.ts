/**
 * The shapes of one reconcile pass: what it depends on, what it is asked, what it answers, and
 * when its key is due again. Pure.
 */
import type { DesiredOptions } from "./desired.ts";
import type { Observer } from "./observe.ts";
import type {
  Action,
  Backups,
  Component,
  DesiredInstance,
  Driver,
  InstanceRecord,
  InstanceStatus,
  InstanceStore,
  Journal,
  Restores,
} from "./types.ts";

/** Health's say in a pass: components to restart now, or a reason to give up and mark failed. */
export interface HealthGate {
  decide(instance: InstanceRecord, shouldRun: boolean, now: Date): Promise<{ restart: Component[]; fail: string | null }>;
  restarted(instance: InstanceRecord, components: readonly Component[], now: Date): Promise<void>;
}

export interface ReconcilerDeps {
  readonly store: InstanceStore;
  readonly journal: Journal;
  readonly backups: Backups;
  /** Restores and requested backups are worked only when set (the daemon and one-shot commands set it). */
  readonly restores?: Restores;
  readonly driver: Driver;
  readonly observer: Observer;
  readonly desiredOptions: Omit<DesiredOptions, "now">;
  readonly now: () => Date;
  /** The current leader epoch, or undefined when this process does not lead. */
  readonly epoch: () => number | undefined;
  readonly health?: HealthGate;
  readonly allowOrphanDestroy?: boolean;
  readonly onDrift?: (kind: string) => void;
  readonly onConverged?: (seconds: number) => void;
  /** Called when a pass completed backups of an instance of `tier` (the backup freshness gauge). */
  readonly onBackedUp?: (tier: string) => void;
  /** Test seam: see ApplyContext.faultHook. */
  readonly faultHook?: (point: "executed" | "journaled") => void;
}

export type PassOutcome =
  | { readonly kind: "gone" }
  | { readonly kind: "no-instance"; readonly reason: string; readonly changesAt: Date | null }
  | { readonly kind: "waiting"; readonly reason: string; readonly retryAfterMs: number }
  | {
      readonly kind: "planned";
      readonly instanceId: string;
      readonly desired: DesiredInstance;
      readonly actions: readonly Action[];
      readonly applied: boolean;
      readonly status: InstanceStatus;
      readonly changesAt: Date | null;
    };

export interface PassOptions {
  /** Plan only: no provisioning, no placement, no actions, no status writes. */
  readonly dryRun?: boolean;
  /** Deep-observe even when the shallow view looks converged. */
  readonly deep?: boolean;
  readonly signal: AbortSignal;
}

export function planned(instance: InstanceRecord, desired: DesiredInstance, actions: readonly Action[], applied: boolean, status: InstanceStatus): PassOutcome {
  return { kind: "planned", instanceId: instance.id, desired, actions, applied, status, changesAt: desired.changesAt };
}

/** When to look at this key again even if nothing changes: the next time the answer changes. */
export function requeueFor(outcome: PassOutcome, now: Date): { requeueAfterMs?: number } {
  switch (outcome.kind) {
    case "gone":
      return {};
    case "waiting":
      return { requeueAfterMs: outcome.retryAfterMs };
    case "no-instance":
    case "planned": {
      if (outcome.kind === "planned" && outcome.status === "deprovisioning") return { requeueAfterMs: 1 };
      if (!outcome.changesAt) return {};
      return { requeueAfterMs: Math.max(1, outcome.changesAt.getTime() - now.getTime()) };
    }
  }
}

