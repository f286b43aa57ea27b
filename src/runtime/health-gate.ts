/**
 * Health's say in a reconcile pass: restart components that failed their probes three times in a
 * row (at most once per 10 minutes), and after three restarts without recovery mark the instance
 * failed and queue one alert per incident (src/reconciler/health-policy.ts has the rules). A
 * restart the customer asked for (`instances.restart_requested_at`, the API) restarts every
 * component once, is not a health incident and does not count towards giving up.
 */
import type { Sql } from "postgres";

import { consecutiveFailures, instanceRestartDecision, restartDecision } from "../reconciler/health-policy.ts";
import type { HealthGate } from "../reconciler/pass.ts";
import { type Component, COMPONENTS } from "../reconciler/types.ts";
import { clearRestartRequest, incidentKey, raiseHealthAlert, recordRestart, restartRequestedAt, restartState } from "../state/health.ts";

export function createHealthGate(sql: Sql): HealthGate {
  /** The request each instance's pass is answering, between `decide` and `restarted`. */
  const answering = new Map<string, Date>();
  return {
    decide: async (instance, shouldRun, now) => {
      const requested = shouldRun ? await restartRequestedAt(sql, instance.id) : null;
      if (requested) {
        answering.set(instance.id, requested);
        return { restart: [...COMPONENTS], fail: null };
      }
      const state = await restartState(sql, instance.id);
      if (!state || !shouldRun) return { restart: [], fail: null };
      const components = state.components.map((c) => ({ ...c, failuresInARow: consecutiveFailures(c.recentProbes) }));
      const decision = instanceRestartDecision(components.map((component) => restartDecision({ ...component, shouldRun, now })));
      switch (decision.kind) {
        case "none":
          return { restart: [], fail: null };
        case "restart":
          return { restart: [...decision.components], fail: null };
        case "fail": {
          const failing = components.filter((c) => c.failuresInARow > 0).map((c) => c.component);
          await raiseHealthAlert(sql, {
            instanceId: instance.id,
            incidentKey: incidentKey(state.unhealthySince ?? now),
            reason: decision.reason,
            components: failing,
          });
          return { restart: [], fail: decision.reason };
        }
      }
    },
    restarted: async (instance, components: readonly Component[], now) => {
      const requested = answering.get(instance.id);
      answering.delete(instance.id);
      if (requested) return clearRestartRequest(sql, instance.id, requested, now);
      // One restart of the instance, whatever the number of components (see health-policy.ts).
      if (components[0]) await recordRestart(sql, instance.id, components[0], now);
    },
  };
}
