import {
  Counter,
  type CounterConfiguration,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type HistogramConfiguration,
  type Registry,
} from "prom-client";

import { type InFlightStats, PRIORITIES, type Priority, type WorkQueueMetricsSink } from "./queue.ts";
import { COMPONENTS, PHASES, TIERS } from "./types.ts";

/**
 * The controller's Prometheus metrics (DESIGN.md section 11). Names, labels and buckets of the
 * controller-runtime and workqueue families match reconcilers.md section 6 exactly, so existing
 * dashboards work. Every metric lives in the injected Registry (never prom-client's global one),
 * and `initMetrics` creates every known series at zero so the first scrape already shows them.
 * No label ever carries an app, instance or subscription id.
 */

/** `controller_runtime_reconcile_total{result}`. "requeue" exists for dashboard parity only. */
export const RECONCILE_RESULTS = ["success", "error", "requeue", "requeue_after"] as const;
export type ReconcileResultLabel = (typeof RECONCILE_RESULTS)[number];

/** Every kind `driftKinds` in plan.ts reports (kept in step by a test). */
export const DRIFT_KINDS = [
  "app_missing",
  "app_not_deployed",
  "app_stopped",
  "app_running",
  "storage_missing",
  "config_changed",
  "resources_changed",
  "domains_changed",
  "image_changed",
  "tls_missing",
  "orphan_app",
] as const;
export type DriftKind = (typeof DRIFT_KINDS)[number];

/** Aggregate instance health (DESIGN.md section 9), plus "unknown" before the first probe. */
export const HEALTH_STATUSES = ["healthy", "degraded", "critical", "unreachable", "unknown"] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

/** controller-runtime's `reconcile_time_seconds` buckets, verbatim. */
export const RECONCILE_TIME_BUCKETS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
  1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** `ExponentialBuckets(10e-9, 10, 12)`: 1e-8 … 1e3 s, written as exact decimals. */
export const WORKQUEUE_DURATION_BUCKETS: readonly number[] = Array.from({ length: 12 }, (_, i) => Number(`1e${i - 8}`));

/** Provision-to-ready scale (crossplane's first_time_to_readiness buckets). */
export const CONVERGE_BUCKETS: readonly number[] = [1, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];

/** Health probes time out after 5 s; the 10 s bucket catches a slow event loop. */
export const HEALTH_PROBE_BUCKETS: readonly number[] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The `priority` label of workqueue_depth, as controller-runtime prints it (LowPriority = -100). */
export const PRIORITY_LABEL: Readonly<Record<Priority, string>> = { high: "0", low: "-100" };

export interface MetricNames {
  /** `controller` label of the controller-runtime series. Default "instance". */
  readonly controller?: string;
  /** `name` label of the workqueue series. Default: the controller name. */
  readonly queue?: string;
  /** `name` label of leader_election_master_status (the lease name). Default "mindroom-controller". */
  readonly leaderElection?: string;
}

export interface InstanceCount {
  readonly phase: string;
  readonly tier: string;
  readonly health: string;
  readonly count: number;
}

type QueueLabels = { name: string; controller: string };

export interface ControllerMetrics {
  readonly registry: Registry;
  readonly reconcileTotal: Counter<"controller" | "result">;
  readonly reconcileErrors: Counter<"controller">;
  readonly terminalReconcileErrors: Counter<"controller">;
  readonly reconcilePanics: Counter<"controller">;
  readonly reconcileTimeouts: Counter<"controller">;
  readonly reconcileTime: Histogram<"controller">;
  readonly maxConcurrentReconciles: Gauge<"controller">;
  readonly activeWorkers: Gauge<"controller">;
  readonly workqueueDepth: Gauge<"name" | "controller" | "priority">;
  readonly workqueueAdds: Counter<"name" | "controller">;
  readonly workqueueRetries: Counter<"name" | "controller">;
  readonly workqueueQueueDuration: Histogram<"name" | "controller">;
  readonly workqueueWorkDuration: Histogram<"name" | "controller">;
  readonly workqueueUnfinishedWork: Gauge<"name" | "controller">;
  readonly workqueueLongestRunning: Gauge<"name" | "controller">;
  readonly leaderElectionMasterStatus: Gauge<"name">;
  readonly instances: Gauge<"phase" | "tier" | "health">;
  readonly drift: Counter<"kind">;
  readonly convergeSeconds: Histogram;
  readonly healthProbeSeconds: Histogram<"component">;
  readonly backupLastSuccess: Gauge<"tier">;
  readonly orphanApps: Gauge<"host">;
  /** Creates every known series at zero (controller, queue, drift kinds, components, tiers...). */
  initMetrics(): void;
  /** Zeroes one controller's series and publishes its worker limit; called by Controller.start. */
  initController(controller: string, maxConcurrentReconciles: number): void;
  /** The sink a WorkQueue reports to, with its labels bound and its series zeroed. */
  forQueue(name: string, controller?: string): WorkQueueMetricsSink;
  /** Replaces the whole instance gauge: combinations absent from `counts` read 0. */
  setInstanceCounts(counts: Iterable<InstanceCount>): void;
}

/**
 * Registers every controller metric on `registry`. A metric some other module already registered
 * under the same name and type (the leader gauge, the health probe histogram) is reused, so the
 * order of wiring does not matter; the same name with another type throws.
 */
export function createControllerMetrics(registry: Registry, names: MetricNames = {}): ControllerMetrics {
  const controller = names.controller ?? "instance";
  const queue = names.queue ?? controller;
  const lease = names.leaderElection ?? "mindroom-controller";
  const probes = probesOf(registry);
  const make = makers(registry);
  const m: Metrics = {
    registry,
    ...controllerRuntimeMetrics(make),
    ...workqueueMetrics(make, readProbes(probes, sumUnfinished), readProbes(probes, maxLongest)),
    ...mindroomMetrics(make),
  };
  return {
    ...m,
    initMetrics() {
      zeroController(m, controller);
      zeroQueue(m, probes, { name: queue, controller });
      m.leaderElectionMasterStatus.set({ name: lease }, 0);
      zeroInstances(m);
      for (const kind of DRIFT_KINDS) m.drift.inc({ kind }, 0);
      for (const component of COMPONENTS) m.healthProbeSeconds.zero({ component });
      for (const tier of TIERS) m.backupLastSuccess.set({ tier }, 0);
    },
    initController(name, maxConcurrentReconciles) {
      zeroController(m, name);
      m.maxConcurrentReconciles.set({ controller: name }, maxConcurrentReconciles);
    },
    forQueue(name, controllerName = name) {
      const labels = { name, controller: controllerName };
      return queueSink(m, labels, zeroQueue(m, probes, labels));
    },
    setInstanceCounts(counts) {
      // Drop series of statuses no longer present (e.g. `pending` once everything runs).
      m.instances.reset();
      zeroInstances(m);
      for (const { phase, tier, health, count } of counts) m.instances.inc({ phase, tier, health }, count);
    },
  };
}

type Metrics = Omit<ControllerMetrics, "initMetrics" | "initController" | "forQueue" | "setInstanceCounts">;
type Probe = () => InFlightStats;
/** Per registry, per queue label set: the in-flight probes read at scrape time. */
type ProbeMap = Map<string, { labels: QueueLabels; probes: Set<Probe> }>;
const probeMaps = new WeakMap<Registry, ProbeMap>();

function probesOf(registry: Registry): ProbeMap {
  let map = probeMaps.get(registry);
  if (!map) probeMaps.set(registry, (map = new Map()));
  return map;
}

function readProbes(map: ProbeMap, pick: (stats: InFlightStats[]) => number): InFlightCollector {
  return (gauge) => {
    for (const { labels, probes } of map.values()) gauge.set(labels, pick([...probes].map((probe) => probe())));
  };
}

const sumUnfinished = (stats: InFlightStats[]): number => stats.reduce((total, s) => total + s.unfinishedSeconds, 0);
const maxLongest = (stats: InFlightStats[]): number => stats.reduce((max, s) => Math.max(max, s.longestSeconds), 0);

/** Zeroes one queue's series and returns the probe set of its labels. */
function zeroQueue(m: Metrics, map: ProbeMap, labels: QueueLabels): Set<Probe> {
  for (const priority of PRIORITIES) m.workqueueDepth.set({ ...labels, priority: PRIORITY_LABEL[priority] }, 0);
  m.workqueueAdds.inc(labels, 0);
  m.workqueueRetries.inc(labels, 0);
  m.workqueueQueueDuration.zero(labels);
  m.workqueueWorkDuration.zero(labels);
  m.workqueueUnfinishedWork.set(labels, 0);
  m.workqueueLongestRunning.set(labels, 0);
  const id = `${labels.name}\u0000${labels.controller}`;
  let entry = map.get(id);
  if (!entry) map.set(id, (entry = { labels, probes: new Set() }));
  return entry.probes;
}

function zeroController(m: Metrics, controller: string): void {
  for (const result of RECONCILE_RESULTS) m.reconcileTotal.inc({ controller, result }, 0);
  for (const counter of [m.reconcileErrors, m.terminalReconcileErrors, m.reconcilePanics, m.reconcileTimeouts]) {
    counter.inc({ controller }, 0);
  }
  m.reconcileTime.zero({ controller });
  m.activeWorkers.set({ controller }, 0);
}

function zeroInstances(m: Metrics): void {
  for (const phase of PHASES) {
    for (const tier of TIERS) for (const health of HEALTH_STATUSES) m.instances.set({ phase, tier, health }, 0);
  }
}

type Makers = ReturnType<typeof makers>;

function makers(registry: Registry) {
  const registers = [registry];
  return {
    counter: <T extends string>(config: CounterConfiguration<T>): Counter<T> =>
      reuse(registry, config.name, Counter, () => new Counter({ ...config, registers })) as Counter<T>,
    gauge: <T extends string>(config: GaugeConfiguration<T>): Gauge<T> =>
      reuse(registry, config.name, Gauge, () => new Gauge({ ...config, registers })) as Gauge<T>,
    histogram: <T extends string>(config: HistogramConfiguration<T>): Histogram<T> =>
      reuse(registry, config.name, Histogram, () => new Histogram({ ...config, registers })) as Histogram<T>,
  };
}

function reuse<M>(registry: Registry, name: string, type: abstract new (...args: never[]) => M, create: () => M): M {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return create();
  if (!(existing instanceof type)) throw new Error(`metric ${name} is already registered with another type`);
  return existing;
}

function controllerRuntimeMetrics(make: Makers) {
  const perController = { labelNames: ["controller"] as const };
  return {
    reconcileTotal: make.counter({
      name: "controller_runtime_reconcile_total",
      help: "Total number of reconciliations per controller",
      labelNames: ["controller", "result"] as const,
    }),
    reconcileErrors: make.counter({ name: "controller_runtime_reconcile_errors_total", help: "Total number of reconciliation errors per controller", ...perController }),
    terminalReconcileErrors: make.counter({ name: "controller_runtime_terminal_reconcile_errors_total", help: "Total number of terminal reconciliation errors per controller", ...perController }),
    reconcilePanics: make.counter({ name: "controller_runtime_reconcile_panics_total", help: "Total number of reconciliation panics per controller", ...perController }),
    reconcileTimeouts: make.counter({ name: "controller_runtime_reconcile_timeouts_total", help: "Total number of reconciliation timeouts per controller", ...perController }),
    reconcileTime: make.histogram({
      name: "controller_runtime_reconcile_time_seconds",
      help: "Length of time per reconciliation per controller",
      buckets: [...RECONCILE_TIME_BUCKETS],
      ...perController,
    }),
    maxConcurrentReconciles: make.gauge({ name: "controller_runtime_max_concurrent_reconciles", help: "Maximum number of concurrent reconciles per controller", ...perController }),
    activeWorkers: make.gauge({ name: "controller_runtime_active_workers", help: "Number of currently used workers per controller", ...perController }),
  };
}

type InFlightCollector = (gauge: Gauge<"name" | "controller">) => void;

function workqueueMetrics(make: Makers, unfinished: InFlightCollector, longest: InFlightCollector) {
  const perQueue = { labelNames: ["name", "controller"] as const };
  const durations = { buckets: [...WORKQUEUE_DURATION_BUCKETS], ...perQueue };
  return {
    workqueueDepth: make.gauge({
      name: "workqueue_depth",
      help: "Current depth of workqueue by workqueue and priority",
      labelNames: ["name", "controller", "priority"] as const,
    }),
    workqueueAdds: make.counter({ name: "workqueue_adds_total", help: "Total number of adds handled by workqueue", ...perQueue }),
    workqueueRetries: make.counter({ name: "workqueue_retries_total", help: "Total number of retries handled by workqueue", ...perQueue }),
    workqueueQueueDuration: make.histogram({ name: "workqueue_queue_duration_seconds", help: "How long in seconds an item stays in workqueue before being requested", ...durations }),
    workqueueWorkDuration: make.histogram({ name: "workqueue_work_duration_seconds", help: "How long in seconds processing an item from workqueue takes", ...durations }),
    workqueueUnfinishedWork: make.gauge({
      name: "workqueue_unfinished_work_seconds",
      help: "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads.",
      collect() {
        unfinished(this);
      },
      ...perQueue,
    }),
    workqueueLongestRunning: make.gauge({
      name: "workqueue_longest_running_processor_seconds",
      help: "How many seconds has the longest running processor for workqueue been running",
      collect() {
        longest(this);
      },
      ...perQueue,
    }),
  };
}

function mindroomMetrics(make: Makers) {
  return {
    leaderElectionMasterStatus: make.gauge({
      name: "leader_election_master_status",
      help: "1 while this replica holds the lease, 0 otherwise; 'name' is the lease name",
      labelNames: ["name"] as const,
    }),
    instances: make.gauge({ name: "mindroom_instances", help: "Instances by observed status (phase), tier and aggregate health", labelNames: ["phase", "tier", "health"] as const }),
    drift: make.counter({ name: "mindroom_drift_total", help: "Drift found by observe, by kind", labelNames: ["kind"] as const }),
    convergeSeconds: make.histogram({ name: "mindroom_converge_seconds", help: "Seconds from a generation change to the instance converging on it", buckets: [...CONVERGE_BUCKETS] }),
    healthProbeSeconds: make.histogram({ name: "mindroom_health_probe_seconds", help: "Duration of one health probe, by component", labelNames: ["component"] as const, buckets: [...HEALTH_PROBE_BUCKETS] }),
    backupLastSuccess: make.gauge({ name: "mindroom_backup_last_success_timestamp_seconds", help: "Unix time of the newest completed backup, by tier (0: never)", labelNames: ["tier"] as const }),
    orphanApps: make.gauge({ name: "mindroom_orphan_apps", help: "Apps on a host that belong to no instance", labelNames: ["host"] as const }),
  };
}

function queueSink(m: Metrics, labels: QueueLabels, probes: Set<Probe>): WorkQueueMetricsSink {
  return {
    depth: (priority, delta) => m.workqueueDepth.inc({ ...labels, priority: PRIORITY_LABEL[priority] }, delta),
    added: () => m.workqueueAdds.inc(labels),
    retried: () => m.workqueueRetries.inc(labels),
    queued: (seconds) => m.workqueueQueueDuration.observe(labels, seconds),
    worked: (seconds) => m.workqueueWorkDuration.observe(labels, seconds),
    inFlight(probe) {
      probes.add(probe);
      return () => probes.delete(probe);
    },
  };
}
