/**
 * Status conditions (Kubernetes style): `Ready`, `Synced`, `Healthy`, `BackedUp`, `Restored`. Pure.
 * `lastTransitionTime` moves only when a condition's status changes, so dashboards can tell how
 * long an instance has been not ready.
 */
import type { Condition, DesiredInstance, HealthStatus, InstanceStatus, Phase } from "./types.ts";

export type ConditionInput = Omit<Condition, "lastTransitionTime" | "observedGeneration">;

export function setConditions(
  previous: readonly Condition[],
  updates: readonly ConditionInput[],
  now: Date,
  generation: number,
): Condition[] {
  const byType = new Map(previous.map((condition) => [condition.type, condition]));
  for (const update of updates) {
    const old = byType.get(update.type);
    const transitioned = !old || old.status !== update.status;
    byType.set(update.type, {
      ...update,
      lastTransitionTime: transitioned ? now.toISOString() : old.lastTransitionTime,
      observedGeneration: generation,
    });
  }
  const order: Condition["type"][] = ["Ready", "Synced", "Healthy", "BackedUp", "Restored"];
  return order.flatMap((type) => {
    const condition = byType.get(type);
    return condition ? [condition] : [];
  });
}

export function healthCondition(health: HealthStatus, phase: Phase): ConditionInput {
  if (phase !== "running") return { type: "Healthy", status: "Unknown", reason: "NotRunning", message: `desired phase is ${phase}` };
  switch (health) {
    case "healthy":
      return { type: "Healthy", status: "True", reason: "ProbesPassing", message: "every component answers its health path" };
    case "degraded":
      return { type: "Healthy", status: "False", reason: "Degraded", message: "some components fail their health probes" };
    case "critical":
      return { type: "Healthy", status: "False", reason: "BackendDown", message: "the backend fails its health probe" };
    case "unreachable":
      return { type: "Healthy", status: "False", reason: "Unreachable", message: "no component answers its health probe" };
    case "unknown":
      return { type: "Healthy", status: "Unknown", reason: "NotProbedYet", message: "no health probe has run yet" };
  }
}

/** The observed status an instance has once its desired phase has been reached. */
export function convergedStatus(phase: Phase): InstanceStatus {
  return phase;
}

/**
 * The status to show after a pass that failed on its way to `phase`. `running` only when every
 * component existed, was deployed and ran before the pass (`serving`): a half-provisioned
 * instance is `provisioning` however many passes failed, so it is never reported running nor
 * sent its welcome email.
 */
export function progressingStatus(phase: Phase, serving: boolean): InstanceStatus {
  switch (phase) {
    case "running":
      return serving ? "running" : "provisioning";
    case "stopped":
      return "stopping";
    case "deprovisioned":
      return "deprovisioning";
  }
}

export function ready(status: "True" | "False", reason: string, message: string): ConditionInput {
  return { type: "Ready", status, reason, message };
}

export function synced(status: "True" | "False", reason: string, message: string): ConditionInput {
  return { type: "Synced", status, reason, message };
}

/** The conditions of a pass that converged on `desired` (or only took the final backup of a teardown). */
export function convergedConditions(desired: DesiredInstance, backupOnly: boolean): ConditionInput[] {
  if (backupOnly) {
    return [
      synced("True", "BackupTaken", "final backup completed; teardown continues"),
      ready("False", "TearingDown", desired.reason),
      { type: "BackedUp", status: "True", reason: "FinalBackupCompleted", message: "a pre-deprovision backup of every storage entry is complete" },
    ];
  }
  return [synced("True", "ReconcileSuccess", `converged on phase ${desired.phase}`), ready("True", `Phase${capitalise(desired.phase)}`, desired.reason)];
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
