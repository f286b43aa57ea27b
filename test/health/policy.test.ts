import { describe, expect, test } from "vitest";

import {
  aggregate,
  type AggregateHealth,
  type ComponentResult,
  consecutiveFailures,
  countsAsUp,
  instanceRestartDecision,
  nextProbeAt,
  phaseOffsetMs,
  restartAllowedAt,
  type RestartDecision,
  restartDecision,
  type RestartInput,
} from "../../src/reconciler/health-policy.ts";

const up = (component: ComponentResult["component"]): ComponentResult => ({ component, ok: true });
const down = (component: ComponentResult["component"]): ComponentResult => ({ component, ok: false });

describe("aggregate", () => {
  const cases: Record<string, { reason: string; results: ComponentResult[]; want: AggregateHealth }> = {
    "all up": { reason: "every component answered", results: [up("matrix"), up("backend"), up("frontend")], want: "healthy" },
    "backend down": { reason: "the API is the product", results: [up("matrix"), down("backend"), up("frontend")], want: "critical" },
    "only backend up": { reason: "backend up, others down: still usable", results: [down("matrix"), up("backend"), down("frontend")], want: "degraded" },
    "frontend down": { reason: "some components down, backend up", results: [up("matrix"), up("backend"), down("frontend")], want: "degraded" },
    "matrix down": { reason: "some components down, backend up", results: [down("matrix"), up("backend"), up("frontend")], want: "degraded" },
    "none up": { reason: "nothing answered: unreachable beats critical", results: [down("matrix"), down("backend"), down("frontend")], want: "unreachable" },
    "backend and matrix down": { reason: "backend down and something up: critical", results: [down("matrix"), down("backend"), up("frontend")], want: "critical" },
    "nothing probed": { reason: "no answer at all counts as unreachable", results: [], want: "unreachable" },
    "backend not probed": { reason: "critical needs a failed backend probe", results: [up("matrix"), down("frontend")], want: "degraded" },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(aggregate(tc.results), tc.reason).toBe(tc.want));
  }

  test("uptime counts healthy and degraded rounds as up", () => {
    expect([("healthy"), "degraded", "critical", "unreachable"].map((h) => countsAsUp(h as AggregateHealth))).toEqual([true, true, false, false]);
  });
});

describe("consecutiveFailures (newest first)", () => {
  const cases: Record<string, { reason: string; history: boolean[]; want: number }> = {
    empty: { reason: "no probes, no failures", history: [], want: 0 },
    "latest ok": { reason: "a success ends the streak", history: [true, false, false], want: 0 },
    "two then ok": { reason: "count stops at the first success", history: [false, false, true, false], want: 2 },
    "all failed": { reason: "every probe failed", history: [false, false, false], want: 3 },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(consecutiveFailures(tc.history.map((ok) => ({ ok }))), tc.reason).toBe(tc.want));
  }
});

describe("restartDecision", () => {
  const now = new Date("2026-03-01T12:00:00Z");
  const minutesAgo = (m: number): Date => new Date(now.getTime() - m * 60_000);
  const base: RestartInput = { component: "backend", failuresInARow: 3, shouldRun: true, lastRestartAt: null, restartsWithoutRecovery: 0, now };
  const cases: Record<string, { reason: string; input: Partial<RestartInput>; want: RestartDecision }> = {
    "third failure": { reason: "three failures in a row of a component that should run", input: {}, want: { kind: "restart", component: "backend" } },
    "two failures": { reason: "below the threshold", input: { failuresInARow: 2 }, want: { kind: "none" } },
    "should not run": { reason: "a stopped instance is never restarted", input: { shouldRun: false, failuresInARow: 9 }, want: { kind: "none" } },
    "cooldown": { reason: "at most one restart per 10 minutes", input: { lastRestartAt: minutesAgo(9), restartsWithoutRecovery: 1 }, want: { kind: "none" } },
    "cooldown over": { reason: "10 minutes after the last restart", input: { lastRestartAt: minutesAgo(10), restartsWithoutRecovery: 2 }, want: { kind: "restart", component: "backend" } },
    "three restarts did not help": {
      reason: "after 3 restarts without recovery the instance fails",
      input: { component: "matrix", failuresInARow: 4, lastRestartAt: minutesAgo(15), restartsWithoutRecovery: 3 },
      want: { kind: "fail", reason: "matrix failed 4 health probes in a row after 3 restarts without recovery" },
    },
    "fail ignores cooldown": {
      reason: "giving up does not wait for the cooldown",
      input: { lastRestartAt: minutesAgo(1), restartsWithoutRecovery: 3 },
      want: { kind: "fail", reason: "backend failed 3 health probes in a row after 3 restarts without recovery" },
    },
    "three restarts but healthy now": { reason: "no failures, nothing to do", input: { failuresInARow: 0, restartsWithoutRecovery: 3 }, want: { kind: "none" } },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(restartDecision({ ...base, ...tc.input }), tc.reason).toEqual(tc.want));
  }

  test("restartAllowedAt says when the cooldown ends", () => {
    expect(restartAllowedAt(null, now)).toBeNull();
    expect(restartAllowedAt(minutesAgo(4), now)).toEqual(new Date(now.getTime() + 6 * 60_000));
    expect(restartAllowedAt(minutesAgo(11), now)).toBeNull();
  });
});

describe("instanceRestartDecision", () => {
  const cases: Record<string, { reason: string; decisions: RestartDecision[]; want: ReturnType<typeof instanceRestartDecision> }> = {
    nothing: { reason: "no component needs anything", decisions: [{ kind: "none" }, { kind: "none" }], want: { kind: "none" } },
    "two restarts": {
      reason: "due components restart together (one restart of the instance)",
      decisions: [{ kind: "restart", component: "matrix" }, { kind: "none" }, { kind: "restart", component: "frontend" }],
      want: { kind: "restart", components: ["matrix", "frontend"] },
    },
    "fail wins": {
      reason: "giving up beats restarting",
      decisions: [{ kind: "restart", component: "matrix" }, { kind: "fail", reason: "x" }],
      want: { kind: "fail", reason: "x" },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(instanceRestartDecision(tc.decisions), tc.reason).toEqual(tc.want));
  }
});

describe("probe schedule", () => {
  const interval = 300_000;

  test("phase offsets are stable, inside the interval, and spread evenly", () => {
    const ids = Array.from({ length: 1000 }, (_, i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`);
    const offsets = ids.map((id) => phaseOffsetMs(id, interval));
    expect(offsets.every((o) => o >= 0 && o < interval)).toBe(true);
    expect(phaseOffsetMs(ids[0]!, interval)).toBe(offsets[0]);
    // Ten equal buckets of the interval each get a fair share (expected 100 each).
    const buckets = new Array<number>(10).fill(0);
    for (const o of offsets) buckets[Math.floor(o / (interval / 10))]! += 1;
    expect(Math.min(...buckets)).toBeGreaterThan(60);
    expect(Math.max(...buckets)).toBeLessThan(140);
  });

  const cases: Record<string, { reason: string; offset: number; now: number; want: number }> = {
    "before phase": { reason: "later in the same slot", offset: 1000, now: 600_500, want: 601_000 },
    "at phase": { reason: "strictly after now: the next slot", offset: 1000, now: 601_000, want: 901_000 },
    "after phase": { reason: "next slot's phase", offset: 1000, now: 650_000, want: 901_000 },
    "zero offset": { reason: "multiples of the interval", offset: 0, now: 0, want: 300_000 },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(`nextProbeAt: ${name}`, () => expect(nextProbeAt(tc.offset, interval, new Date(tc.now)).getTime(), tc.reason).toBe(tc.want));
  }
});
