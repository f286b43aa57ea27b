/**
 * Health's say in a reconcile pass: restart components that failed their probes three times in a
 * row (at most once per 10 minutes), and after three restarts without recovery mark the instance
 * failed and queue one alert per incident (src/reconciler/health-policy.ts has the rules).
 */
import type { Sql } from "postgres";

import { instanceRestartDecision, restartDecision } from "../reconciler/health-policy.ts";
import type { HealthGate } from "../reconciler/reconcile.ts";
import type { Component } from "../reconciler/types.ts";
import { incidentKey, raiseHealthAlert, recordRestart, restartState } from "../state/health.ts";

export function createHealthGate(sql: Sql): HealthGate {
  return {
    decide: async (instance, shouldRun, now) => {
      const state = await restartState(sql, instance.id);
      if (!state || !shouldRun) return { restart: [], fail: null };
      const decision = instanceRestartDecision(state.components.map((component) => restartDecision({ ...component, shouldRun, now })));
      switch (decision.kind) {
        case "none":
          return { restart: [], fail: null };
        case "restart":
          return { restart: [...decision.components], fail: null };
        case "fail": {
          const failing = state.components.filter((c) => c.failuresInARow > 0).map((c) => c.component);
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
      // One restart of the instance, whatever the number of components (see health-policy.ts).
      if (components[0]) await recordRestart(sql, instance.id, components[0], now);
    },
  };
}
