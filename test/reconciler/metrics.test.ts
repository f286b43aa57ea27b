import { Counter, Histogram, register as globalRegistry, Registry } from "prom-client";
import { describe, expect, test } from "vitest";

import {
  createControllerMetrics,
  DRIFT_KINDS,
  HEALTH_STATUSES,
  RECONCILE_RESULTS,
  RECONCILE_TIME_BUCKETS,
  WORKQUEUE_DURATION_BUCKETS,
} from "../../src/reconciler/metrics.ts";
import { COMPONENTS, PHASES, TIERS } from "../../src/reconciler/types.ts";

async function scrape(names?: Parameters<typeof createControllerMetrics>[1]): Promise<{ text: string; registry: Registry }> {
  const registry = new Registry();
  createControllerMetrics(registry, names).initMetrics();
  return { text: await registry.metrics(), registry };
}

const q = 'name="instance",controller="instance"';

// reconcilers.md section 6 and DESIGN.md section 11: dashboards depend on these exact names.
const types: Record<string, { reason: string; type: "counter" | "gauge" | "histogram" }> = {
  controller_runtime_reconcile_total: { reason: "controller-runtime result counter", type: "counter" },
  controller_runtime_reconcile_errors_total: { reason: "controller-runtime", type: "counter" },
  controller_runtime_terminal_reconcile_errors_total: { reason: "controller-runtime v0.15+", type: "counter" },
  controller_runtime_reconcile_panics_total: { reason: "controller-runtime", type: "counter" },
  controller_runtime_reconcile_timeouts_total: { reason: "controller-runtime v0.22 ReconciliationTimeout", type: "counter" },
  controller_runtime_reconcile_time_seconds: { reason: "controller-runtime", type: "histogram" },
  controller_runtime_max_concurrent_reconciles: { reason: "controller-runtime", type: "gauge" },
  controller_runtime_active_workers: { reason: "controller-runtime", type: "gauge" },
  workqueue_depth: { reason: "client-go workqueue", type: "gauge" },
  workqueue_adds_total: { reason: "client-go workqueue", type: "counter" },
  workqueue_retries_total: { reason: "client-go workqueue", type: "counter" },
  workqueue_queue_duration_seconds: { reason: "client-go workqueue", type: "histogram" },
  workqueue_work_duration_seconds: { reason: "client-go workqueue", type: "histogram" },
  workqueue_unfinished_work_seconds: { reason: "client-go workqueue: stuck workers", type: "gauge" },
  workqueue_longest_running_processor_seconds: { reason: "client-go workqueue", type: "gauge" },
  leader_election_master_status: { reason: "client-go leader election", type: "gauge" },
  mindroom_instances: { reason: "fleet by phase, tier, health", type: "gauge" },
  mindroom_drift_total: { reason: "drift by kind", type: "counter" },
  mindroom_converge_seconds: { reason: "generation change to converged", type: "histogram" },
  mindroom_health_probe_seconds: { reason: "probe latency by component", type: "histogram" },
  mindroom_backup_last_success_timestamp_seconds: { reason: "backup freshness alerting", type: "gauge" },
  mindroom_orphan_apps: { reason: "apps with no instance, per host", type: "gauge" },
};

describe("names and types", () => {
  for (const [name, tc] of Object.entries(types)) {
    test(name, async () => {
      const { text } = await scrape();
      expect(text, tc.reason).toContain(`# TYPE ${name} ${tc.type}\n`);
    });
  }
});

describe("initMetrics", () => {
  test("every controller and workqueue series exists at zero before the first reconcile", async () => {
    const { text } = await scrape();
    const want = [
      ...RECONCILE_RESULTS.map((result) => `controller_runtime_reconcile_total{controller="instance",result="${result}"} 0`),
      'controller_runtime_reconcile_errors_total{controller="instance"} 0',
      'controller_runtime_terminal_reconcile_errors_total{controller="instance"} 0',
      'controller_runtime_reconcile_panics_total{controller="instance"} 0',
      'controller_runtime_reconcile_timeouts_total{controller="instance"} 0',
      'controller_runtime_reconcile_time_seconds_count{controller="instance"} 0',
      'controller_runtime_active_workers{controller="instance"} 0',
      `workqueue_depth{${q},priority="0"} 0`,
      `workqueue_depth{${q},priority="-100"} 0`,
      `workqueue_adds_total{${q}} 0`,
      `workqueue_retries_total{${q}} 0`,
      `workqueue_queue_duration_seconds_count{${q}} 0`,
      `workqueue_work_duration_seconds_count{${q}} 0`,
      `workqueue_unfinished_work_seconds{${q}} 0`,
      `workqueue_longest_running_processor_seconds{${q}} 0`,
      'leader_election_master_status{name="mindroom-controller"} 0',
      "mindroom_converge_seconds_count 0",
    ];
    for (const line of want) expect(text).toContain(`${line}\n`);
  });

  test("every drift kind, component, tier and instance combination exists at zero", async () => {
    const { text } = await scrape();
    for (const kind of DRIFT_KINDS) expect(text).toContain(`mindroom_drift_total{kind="${kind}"} 0\n`);
    for (const component of COMPONENTS) expect(text).toContain(`mindroom_health_probe_seconds_count{component="${component}"} 0\n`);
    for (const tier of TIERS) expect(text).toContain(`mindroom_backup_last_success_timestamp_seconds{tier="${tier}"} 0\n`);
    const instanceSeries = text.split("\n").filter((l) => l.startsWith("mindroom_instances{"));
    expect(instanceSeries).toHaveLength(PHASES.length * TIERS.length * HEALTH_STATUSES.length);
    expect(instanceSeries.every((l) => l.endsWith(" 0"))).toBe(true);
  });

  test("names choose the controller, queue and lease labels", async () => {
    const { text } = await scrape({ controller: "billing", queue: "billing-q", leaderElection: "lease-1" });
    expect(text).toContain('controller_runtime_reconcile_total{controller="billing",result="success"} 0\n');
    expect(text).toContain('workqueue_adds_total{name="billing-q",controller="billing"} 0\n');
    expect(text).toContain('leader_election_master_status{name="lease-1"} 0\n');
  });
});

describe("buckets", () => {
  test("reconcile_time_seconds uses controller-runtime's 40 buckets", async () => {
    const { text } = await scrape();
    const les = [...text.matchAll(/^controller_runtime_reconcile_time_seconds_bucket\{le="([^"]+)"/gm)].map((m) => m[1]);
    expect(les).toEqual([...RECONCILE_TIME_BUCKETS.map(String), "+Inf"]);
    expect(RECONCILE_TIME_BUCKETS).toHaveLength(40);
    expect(RECONCILE_TIME_BUCKETS.at(-1)).toBe(60);
  });

  test("workqueue durations use ExponentialBuckets(10e-9, 10, 12)", async () => {
    expect(WORKQUEUE_DURATION_BUCKETS).toEqual([1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10, 100, 1000]);
    const { text } = await scrape();
    const les = [...text.matchAll(/^workqueue_queue_duration_seconds_bucket\{le="([^"]+)"/gm)].map((m) => m[1]);
    expect(les).toHaveLength(13);
  });
});

describe("registry", () => {
  test("metrics go to the injected registry only", async () => {
    const before = (await globalRegistry.getMetricsAsJSON()).length;
    const registry = new Registry();
    createControllerMetrics(registry);
    expect((await globalRegistry.getMetricsAsJSON()).length).toBe(before);
    expect(await registry.getMetricsAsJSON()).toHaveLength(Object.keys(types).length);
  });

  test("a metric another module registered first is reused, whatever the wiring order", async () => {
    const registry = new Registry();
    const probe = new Histogram({ name: "mindroom_health_probe_seconds", help: "x", labelNames: ["component"] as const, registers: [registry] });
    const first = createControllerMetrics(registry);
    expect(first.healthProbeSeconds).toBe(probe);
    const second = createControllerMetrics(registry);
    second.drift.inc({ kind: "orphan" });
    expect(await registry.getSingleMetricAsString("mindroom_drift_total")).toContain('mindroom_drift_total{kind="orphan"} 1');
    // A queue wired through the second handle is still seen by the scrape-time gauges.
    const sink = second.forQueue("other");
    const unregister = sink.inFlight(() => ({ unfinishedSeconds: 7, longestSeconds: 4 }));
    const text = await registry.metrics();
    expect(text).toContain('workqueue_unfinished_work_seconds{name="other",controller="other"} 7\n');
    expect(text).toContain('workqueue_longest_running_processor_seconds{name="other",controller="other"} 4\n');
    unregister();
    expect(await registry.metrics()).toContain('workqueue_unfinished_work_seconds{name="other",controller="other"} 0\n');
  });

  test("the same name registered with another type is refused", () => {
    const registry = new Registry();
    new Counter({ name: "workqueue_depth", help: "wrong type", registers: [registry] });
    expect(() => createControllerMetrics(registry)).toThrow(/workqueue_depth is already registered with another type/);
  });

  test("setInstanceCounts replaces the whole gauge", async () => {
    const registry = new Registry();
    const metrics = createControllerMetrics(registry);
    metrics.setInstanceCounts([{ phase: "running", tier: "free", health: "healthy", count: 3 }]);
    metrics.setInstanceCounts([{ phase: "stopped", tier: "starter", health: "unknown", count: 2 }]);
    const text = await registry.metrics();
    expect(text).toContain('mindroom_instances{phase="running",tier="free",health="healthy"} 0\n');
    expect(text).toContain('mindroom_instances{phase="stopped",tier="starter",health="unknown"} 2\n');
  });

  test("initController publishes the worker limit", async () => {
    const registry = new Registry();
    createControllerMetrics(registry).initController("instance", 16);
    expect(await registry.getSingleMetricAsString("controller_runtime_max_concurrent_reconciles")).toContain(
      'controller_runtime_max_concurrent_reconciles{controller="instance"} 16',
    );
  });
});
