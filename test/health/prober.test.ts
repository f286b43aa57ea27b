/**
 * The prober end to end: real HTTP against a Host-routing ingress started here, real Postgres.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { consecutiveFailures, restartDecision } from "../../src/reconciler/health-policy.ts";
import { createControllerMetrics } from "../../src/reconciler/metrics.ts";
import type { Component } from "../../src/reconciler/types.ts";
import { defaultDomainFor, HEALTH_PROBE_METRIC, HealthProber, type HealthProberOptions, probeAddress, type ProbeRound } from "../../src/sources/health.ts";
import { incidentKey, raiseHealthAlert, recordRestart, restartState } from "../../src/state/health.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { type Behaviour, type FakeIngress, insertHost, insertInstance, type SeededInstance, startIngress } from "./fixtures.ts";

const BASE = "mindroom.test";
const domainFor = defaultDomainFor(BASE);
const silent = { info: () => {}, warn: () => {}, error: () => {} };

let db: TestDatabase;
let ingress: FakeIngress;
let hostId: string;
const unhealthyCalls: { subscriptionId: string; instanceId: string; components: readonly Component[] }[] = [];
// Rounds one minute apart, so each round has its own checked_at whatever the machine's speed.
let fakeTime = Date.parse("2026-03-01T00:00:00Z");
const clock = (): Date => new Date((fakeTime += 60_000));

function prober(overrides: Partial<HealthProberOptions> = {}): HealthProber {
  return new HealthProber({
    sql: db.sql,
    registry: new Registry(),
    domainFor,
    onUnhealthy: (subscriptionId, instanceId, components) => void unhealthyCalls.push({ subscriptionId, instanceId, components }),
    logger: silent,
    intervalMs: 60_000,
    timeoutMs: 2_000,
    now: clock,
    ...overrides,
  });
}

function behave(inst: SeededInstance, b: Partial<Record<Component, Behaviour>>): void {
  for (const component of ["matrix", "backend", "frontend"] as const) ingress.set(domainFor(inst.subdomain, component), b[component] ?? "ok");
}

async function probe(p: HealthProber, inst: SeededInstance): Promise<ProbeRound> {
  const rounds = await p.probeOnce(inst.instanceId);
  expect(rounds).toHaveLength(1);
  return rounds[0]!;
}

async function stored(inst: SeededInstance): Promise<{ health_status: string; health_details: { components: Record<string, { ok: boolean; statusCode: number | null; error: string | null }> }; last_health_check: Date | null; uptime_percentage: string | null; restart_count: number }> {
  const [row] = await db.sql<never[]>`
    select health_status, health_details, last_health_check, uptime_percentage, restart_count from instances where id = ${inst.instanceId}`;
  return row!;
}

async function checks(inst: SeededInstance): Promise<{ component: string; ok: boolean; status_code: number | null; latency_ms: number; error: string | null }[]> {
  return db.sql`
    select component, ok, status_code, latency_ms, error from health_checks
    where instance_id = ${inst.instanceId} order by checked_at, component`;
}

beforeAll(async () => {
  db = await createTestDatabase();
  ingress = await startIngress();
  hostId = await insertHost(db.sql, ingress.url);
});
afterAll(async () => {
  await ingress?.close();
  await db?.drop();
});

describe("one round", () => {
  test("all components answer: healthy, with a health_checks row per component", async () => {
    const inst = await insertInstance(db.sql, hostId);
    behave(inst, {});
    const round = await probe(prober(), inst);
    expect(round.health).toBe("healthy");
    const row = await stored(inst);
    expect(row.health_status).toBe("healthy");
    expect(row.last_health_check).not.toBeNull();
    expect(row.uptime_percentage).toBe("100.00");
    expect(row.health_details.components.backend).toMatchObject({ ok: true, statusCode: 200, error: null });
    expect(JSON.stringify(row.health_details)).not.toContain("SECRET-BODY");
    const rows = await checks(inst);
    expect(rows.map((r) => [r.component, r.ok, r.status_code, r.error])).toEqual([
      ["backend", true, 200, null],
      ["frontend", true, 200, null],
      ["matrix", true, 200, null],
    ]);
    expect(rows.every((r) => r.latency_ms >= 0)).toBe(true);
    // Each component at its health path, through the ingress, with its own Host header.
    expect(ingress.requests).toEqual(
      expect.arrayContaining([
        `${inst.subdomain}-api.${BASE} /api/health`,
        `${inst.subdomain}.${BASE} /`,
        `${inst.subdomain}-matrix.${BASE} /_matrix/client/versions`,
      ]),
    );
  });

  const cases: Record<string, { reason: string; behaviour: Partial<Record<Component, Behaviour>>; want: string; failed: Record<string, string> }> = {
    "backend 503": { reason: "the API is down", behaviour: { backend: "503" }, want: "critical", failed: { backend: "HTTP 503" } },
    "frontend connection dropped": { reason: "one non-API component down", behaviour: { frontend: "reset" }, want: "degraded", failed: { frontend: "ECONNRESET" } },
    "everything down": {
      reason: "nothing answered successfully",
      behaviour: { matrix: "reset", backend: "503", frontend: "503" },
      want: "unreachable",
      failed: { matrix: "ECONNRESET", backend: "HTTP 503", frontend: "HTTP 503" },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, async () => {
      const inst = await insertInstance(db.sql, hostId);
      behave(inst, tc.behaviour);
      const logged: string[] = [];
      const capture = (obj: object, msg?: string): void => void logged.push(JSON.stringify(obj) + (msg ?? ""));
      const round = await probe(prober({ logger: { info: capture, warn: capture, error: capture } }), inst);
      expect(logged.length, "the health change is logged").toBeGreaterThan(0);
      expect(logged.join("\n"), "response bodies are never logged").not.toContain("SECRET-BODY");
      expect(round.health, tc.reason).toBe(tc.want);
      expect((await stored(inst)).health_status, tc.reason).toBe(tc.want);
      const failed = Object.fromEntries((await checks(inst)).filter((r) => !r.ok).map((r) => [r.component, r.error]));
      expect(failed, tc.reason).toEqual(tc.failed);
    });
  }

  test("a hanging component times out and counts as a failure", async () => {
    const inst = await insertInstance(db.sql, hostId);
    behave(inst, { backend: "hang" });
    const round = await probe(prober({ timeoutMs: 300 }), inst);
    expect(round.health).toBe("critical");
    const backend = (await checks(inst)).find((r) => r.component === "backend")!;
    expect(backend).toMatchObject({ ok: false, status_code: null, error: "timeout after 300 ms" });
  });

  test("only instances that should run are probed", async () => {
    const running = await insertInstance(db.sql, hostId);
    const stopped = await insertInstance(db.sql, hostId, "stopped");
    const overridden = await insertInstance(db.sql, hostId);
    await db.sql`update instances set desired_state = 'stopped' where id = ${overridden.instanceId}`;
    for (const inst of [running, stopped, overridden]) behave(inst, {});
    // Every target of this database is probed, including the hanging one above: keep it short.
    const probed = (await prober({ timeoutMs: 300 }).probeOnce()).map((r) => r.instanceId);
    expect(probed).toContain(running.instanceId);
    expect(probed).not.toContain(stopped.instanceId);
    expect(probed).not.toContain(overridden.instanceId);
    expect(await prober().probeOnce(stopped.instanceId)).toEqual([]);
  });
});

describe("over several rounds", () => {
  test("three failures in a row report the component once; a restart starts a new count", async () => {
    const inst = await insertInstance(db.sql, hostId);
    const p = prober();
    behave(inst, { matrix: "503" });
    const mine = (): typeof unhealthyCalls => unhealthyCalls.filter((c) => c.instanceId === inst.instanceId);
    await probe(p, inst);
    await probe(p, inst);
    expect(mine()).toEqual([]);
    const third = await probe(p, inst);
    expect(third.unhealthy).toEqual(["matrix"]);
    expect(mine()).toEqual([{ subscriptionId: inst.subscriptionId, instanceId: inst.instanceId, components: ["matrix"] }]);

    // What the reconciler does with it.
    const state = (await restartState(db.sql, inst.instanceId))!;
    const withCounts = state.components.map((c) => ({ ...c, failuresInARow: consecutiveFailures(c.recentProbes) }));
    const matrix = withCounts.find((c) => c.component === "matrix")!;
    expect(matrix).toMatchObject({ failuresInARow: 3, restartsWithoutRecovery: 0, lastRestartAt: null });
    expect(withCounts.filter((c) => c.component !== "matrix").map((c) => c.failuresInARow)).toEqual([0, 0]);
    const now = clock();
    expect(restartDecision({ ...matrix, shouldRun: true, now })).toEqual({ kind: "restart", component: "matrix" });
    await recordRestart(db.sql, inst.instanceId, "matrix", now);
    const after = (await restartState(db.sql, inst.instanceId))!;
    const matrixAfter = after.components.find((c) => c.component === "matrix")!;
    expect(consecutiveFailures(matrixAfter.recentProbes)).toBe(0);
    expect(matrixAfter).toMatchObject({ restartsWithoutRecovery: 1, lastRestartAt: now });
    const [audit] = await db.sql<{ details: { component: string } }[]>`
      select details from audit_logs where instance_id = ${inst.instanceId} and action = 'instance_component_restarted'`;
    expect(audit?.details.component).toBe("matrix");

    // A healthy round is a recovery: restarts without recovery start from zero.
    behave(inst, {});
    await probe(p, inst);
    expect((await stored(inst)).restart_count).toBe(0);
  });

  test("uptime is the share of rounds that were healthy or degraded", async () => {
    const inst = await insertInstance(db.sql, hostId);
    const p = prober();
    const rounds: Partial<Record<Component, Behaviour>>[] = [{}, {}, { backend: "503" }, { frontend: "503" }];
    for (const b of rounds) {
      behave(inst, b);
      await probe(p, inst);
    }
    expect((await stored(inst)).uptime_percentage, "healthy, healthy, critical, degraded").toBe("75.00");
    behave(inst, { matrix: "503", backend: "503", frontend: "503" });
    await probe(p, inst);
    expect((await stored(inst)).uptime_percentage, "one more unreachable round: 3 of 5").toBe("60.00");
  });

  test("a health alert is queued once per incident", async () => {
    const inst = await insertInstance(db.sql, hostId);
    const p = prober();
    behave(inst, { backend: "503" });
    await probe(p, inst);
    await probe(p, inst);
    const first = (await restartState(db.sql, inst.instanceId))!;
    expect(first.unhealthySince).not.toBeNull();
    const alert = { instanceId: inst.instanceId, incidentKey: incidentKey(first.unhealthySince!), reason: "backend failed", components: ["backend"] as const };
    expect(await raiseHealthAlert(db.sql, alert)).toBe(true);
    await probe(p, inst);
    const same = (await restartState(db.sql, inst.instanceId))!;
    expect(same.unhealthySince, "still the same incident").toEqual(first.unhealthySince);
    expect(await raiseHealthAlert(db.sql, { ...alert, incidentKey: incidentKey(same.unhealthySince!) })).toBe(false);

    // Recovery, then a new failure: a new incident, a new alert.
    behave(inst, {});
    await probe(p, inst);
    expect((await restartState(db.sql, inst.instanceId))!.unhealthySince).toBeNull();
    behave(inst, { backend: "503" });
    await probe(p, inst);
    const next = (await restartState(db.sql, inst.instanceId))!;
    expect(next.unhealthySince!.getTime()).toBeGreaterThan(first.unhealthySince!.getTime());
    expect(await raiseHealthAlert(db.sql, { ...alert, incidentKey: incidentKey(next.unhealthySince!) })).toBe(true);

    const rows = await db.sql<{ kind: string; dedupe_key: string; recipient: string; payload: { reason: string } }[]>`
      select kind, dedupe_key, recipient, payload from notifications where instance_id = ${inst.instanceId} and kind = 'health_alert' order by id`;
    const operator = await db.sql<{ dedupe_key: string }[]>`
      select dedupe_key from notifications where instance_id = ${inst.instanceId} and kind = 'operator_alert' and recipient = 'operator' order by id`;
    expect(operator.map((r) => r.dedupe_key), "the operator hears of each incident once too").toEqual([
      `operator:health:${inst.instanceId}:${first.unhealthySince!.toISOString()}`,
      `operator:health:${inst.instanceId}:${next.unhealthySince!.toISOString()}`,
    ]);
    expect(rows.map((r) => r.dedupe_key)).toEqual([
      `health_alert:${inst.instanceId}:${first.unhealthySince!.toISOString()}`,
      `health_alert:${inst.instanceId}:${next.unhealthySince!.toISOString()}`,
    ]);
    expect(rows.every((r) => r.kind === "health_alert" && r.recipient === inst.email && r.payload.reason === "backend failed")).toBe(true);
  });
});

describe("wiring", () => {
  test("reuses a probe histogram already in the registry and observes every component", async () => {
    const registry = new Registry();
    createControllerMetrics(registry);
    const inst = await insertInstance(db.sql, hostId);
    behave(inst, {});
    await probe(prober({ registry }), inst);
    const metric = await registry.getSingleMetric(HEALTH_PROBE_METRIC)!.get();
    const counts = metric.values.filter((v) => (v as { metricName?: string }).metricName === `${HEALTH_PROBE_METRIC}_count`);
    expect(Object.fromEntries(counts.map((v) => [v.labels.component, v.value]))).toEqual({ matrix: 1, backend: 1, frontend: 1 });
  });

  test("probe addresses: through the ingress with a Host header, else https to the domain", () => {
    const viaIngress = probeAddress("http://127.0.0.1:8080", "acme-api.example.com", "/api/health");
    expect([viaIngress.url.href, viaIngress.host]).toEqual(["http://127.0.0.1:8080/api/health", "acme-api.example.com"]);
    const direct = probeAddress(null, "acme-matrix.example.com", "/_matrix/client/versions");
    expect([direct.url.href, direct.host]).toEqual(["https://acme-matrix.example.com/_matrix/client/versions", null]);
    expect(["matrix", "backend", "frontend"].map((c) => domainFor("acme", c as Component))).toEqual([
      "acme-matrix.mindroom.test",
      "acme-api.mindroom.test",
      "acme.mindroom.test",
    ]);
  });

  test("start probes each instance on its own schedule until stopped", async () => {
    const inst = await insertInstance(db.sql, hostId);
    await db.sql`update instances set status = 'stopped' where id <> ${inst.instanceId}`;
    behave(inst, {});
    const seen: ProbeRound[] = [];
    let twice!: () => void;
    let failed!: (err: Error) => void;
    const gotTwo = new Promise<void>((resolve, reject) => ((twice = resolve), (failed = reject)));
    const controller = new AbortController();
    const p = prober({
      intervalMs: 250,
      now: () => new Date(),
      // A failing round is logged by start(); surface it here instead of waiting for the timeout.
      logger: { ...silent, error: (obj) => failed(new Error(`prober logged an error: ${JSON.stringify(obj)}`)) },
      onRound: (round) => {
        seen.push(round);
        if (seen.length === 2) twice();
      },
    });
    const running = p.start(controller.signal);
    await gotTwo;
    controller.abort();
    await running;
    expect(seen.slice(0, 2).map((r) => [r.instanceId, r.health])).toEqual([
      [inst.instanceId, "healthy"],
      [inst.instanceId, "healthy"],
    ]);
    const [{ count }] = await db.sql<[{ count: number }]>`select count(distinct checked_at)::int as count from health_checks where instance_id = ${inst.instanceId}`;
    expect(count).toBeGreaterThanOrEqual(2);
  });
});
