/**
 * Health policy (DESIGN.md section 9): how probe results become an instance's aggregate health,
 * when a failing component is restarted, when the controller gives up, and when each instance is
 * probed. Pure: no I/O, no clock (`now` is a parameter), no randomness.
 */
import { createHash } from "node:crypto";

import type { AggregateHealth, Component } from "./types.ts";

export type { AggregateHealth };

export interface ComponentResult {
  readonly component: Component;
  readonly ok: boolean;
}

/** Probes in a row a component must fail before the reconciler may restart it. */
export const FAILURE_THRESHOLD = 3;
/** A restart is attempted at most this often per instance. */
export const RESTART_COOLDOWN_MS = 10 * 60_000;
/** After this many restarts with no healthy round in between, the instance is marked failed. */
export const MAX_RESTARTS_WITHOUT_RECOVERY = 3;

/**
 * Aggregate of one probe round. Precedence, first match wins:
 * 1. nothing answered (or nothing was probed) → `unreachable`. It beats `critical` because "the
 *    whole instance is gone" (host, ingress or DNS) is a different incident from "the API is down".
 * 2. the backend was probed and failed → `critical`: without the API the product does not work,
 *    even when the frontend and homeserver still answer.
 * 3. everything answered → `healthy`.
 * 4. otherwise (frontend or matrix down, backend up) → `degraded`.
 */
export function aggregate(results: readonly ComponentResult[]): AggregateHealth {
  if (!results.some((r) => r.ok)) return "unreachable";
  if (results.some((r) => r.component === "backend" && !r.ok)) return "critical";
  if (results.every((r) => r.ok)) return "healthy";
  return "degraded";
}

/** Whether a round counts as "up" for uptime_percentage: the API answered (healthy or degraded). */
export function countsAsUp(health: AggregateHealth): boolean {
  return health === "healthy" || health === "degraded";
}

/** Failures in a row at the head of `history`, which is ordered NEWEST FIRST. */
export function consecutiveFailures(history: readonly { readonly ok: boolean }[]): number {
  const firstOk = history.findIndex((h) => h.ok);
  return firstOk === -1 ? history.length : firstOk;
}

export interface RestartInput {
  readonly component: Component;
  /** Failed probes in a row of this component since the last restart of the instance. */
  readonly failuresInARow: number;
  /** Desired state says this component runs (phase `running`, not `reconcile_paused`). */
  readonly shouldRun: boolean;
  /** Last restart of any component of the instance, or null. */
  readonly lastRestartAt: Date | null;
  /** Restarts since the instance was last healthy (`instances.restart_count`). */
  readonly restartsWithoutRecovery: number;
  readonly now: Date;
}

export type RestartDecision =
  | { readonly kind: "none" }
  | { readonly kind: "restart"; readonly component: Component }
  | { readonly kind: "fail"; readonly reason: string };

/**
 * What to do about one component. Restart after FAILURE_THRESHOLD failures in a row, at most once
 * per RESTART_COOLDOWN_MS; once MAX_RESTARTS_WITHOUT_RECOVERY restarts have not helped, `fail`
 * (the caller marks the instance `failed` and raises one alert per incident). Restarting something
 * that should not run, or that has not failed enough, is never right, so those come first.
 */
export function restartDecision(input: RestartInput): RestartDecision {
  if (!input.shouldRun || input.failuresInARow < FAILURE_THRESHOLD) return { kind: "none" };
  if (input.restartsWithoutRecovery >= MAX_RESTARTS_WITHOUT_RECOVERY) {
    return {
      kind: "fail",
      reason: `${input.component} failed ${input.failuresInARow} health probes in a row after ${input.restartsWithoutRecovery} restarts without recovery`,
    };
  }
  if (input.lastRestartAt && input.now.getTime() - input.lastRestartAt.getTime() < RESTART_COOLDOWN_MS) return { kind: "none" };
  return { kind: "restart", component: input.component };
}

export type InstanceRestartDecision =
  | { readonly kind: "none" }
  | { readonly kind: "restart"; readonly components: readonly Component[] }
  | { readonly kind: "fail"; readonly reason: string };

/**
 * Combines the per-component decisions of one instance: any `fail` wins (the first one's reason);
 * otherwise every component due for a restart is restarted in the same pass, which counts as ONE
 * restart of the instance (restart_count and the cooldown are per instance).
 */
export function instanceRestartDecision(decisions: readonly RestartDecision[]): InstanceRestartDecision {
  const failure = decisions.find((d) => d.kind === "fail");
  if (failure) return failure;
  const components = decisions.flatMap((d) => (d.kind === "restart" ? [d.component] : []));
  return components.length > 0 ? { kind: "restart", components } : { kind: "none" };
}

/** When a restart becomes allowed again, or null when the cooldown does not hold it back. */
export function restartAllowedAt(lastRestartAt: Date | null, now: Date): Date | null {
  if (!lastRestartAt) return null;
  const at = lastRestartAt.getTime() + RESTART_COOLDOWN_MS;
  return at > now.getTime() ? new Date(at) : null;
}

// Scheduling ---------------------------------------------------------------------------------------

/**
 * Each instance's own phase inside the probe interval, in [0, intervalMs): a stable hash of its id
 * (the first 32 bits of its SHA-256; FNV-1a alone clusters sequential ids), so probes of many instances spread evenly over the interval instead of arriving all at
 * once, and a restarted controller keeps every instance's rhythm.
 */
export function phaseOffsetMs(instanceId: string, intervalMs: number): number {
  const hash = createHash("sha256").update(instanceId).digest().readUInt32BE(0);
  return Math.floor((hash / 0x1_0000_0000) * intervalMs);
}

/** The first instant strictly after `now` that is `offsetMs` past a multiple of `intervalMs`. */
export function nextProbeAt(offsetMs: number, intervalMs: number, now: Date): Date {
  const t = now.getTime();
  const slot = Math.floor((t - offsetMs) / intervalMs) + 1;
  return new Date(slot * intervalMs + offsetMs);
}
