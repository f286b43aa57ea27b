/**
 * The controller process: the reconciler and its sources, run only while this replica holds the
 * leader lease. Each term gets a fresh work queue and worker pool; when the term ends (lease lost,
 * SIGTERM) its signal aborts, the sources stop enqueueing and the workers drain.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";
import type { Registry } from "prom-client";

import type { Config } from "../config.ts";
import type { BackupStore } from "../drivers/backup-store/types.ts";
import { createDokkuDriver, type DokkuDriver } from "../drivers/dokku/driver.ts";
import type { Logger } from "../logger.ts";
import { Controller } from "../reconciler/controller.ts";
import { LeaderElector } from "../reconciler/leader.ts";
import { type ControllerMetrics, createControllerMetrics } from "../reconciler/metrics.ts";
import { Observer } from "../reconciler/observe.ts";
import { findOrphans } from "../reconciler/plan.ts";
import { WorkQueue } from "../reconciler/queue.ts";
import { describePlan, type PassOutcome, Reconciler } from "../reconciler/reconcile.ts";
import { DEFAULT_TEMPLATE } from "../reconciler/template.ts";
import type { Component, Driver, HostRef, ObservedHost } from "../reconciler/types.ts";
import { defaultDomainFor, HealthProber } from "../sources/health.ts";
import { Resync } from "../sources/resync.ts";
import { startSqlSource } from "../sources/sql.ts";
import { listHosts, markHostSeen, pinHostKey } from "../state/hosts.ts";
import { createInstanceStore, liveAppNames } from "../state/instances.ts";
import { leaseStore } from "../state/lease.ts";
import { createJournal } from "../state/operations.ts";
import { runBackupJobs } from "./backup-jobs.ts";
import { type BackupMetrics, createBackupMetrics } from "./backup-metrics.ts";
import { createBackupPort, createRestorePort } from "./backups.ts";
import { createHealthGate } from "./health-gate.ts";
import { runScheduledJobs } from "./jobs.ts";
import { OperatorRequests } from "./operator-requests.ts";
import { createOutboxMetrics, outboxOptions, runOutbox } from "./outbox.ts";

export interface ControllerRuntimeOptions {
  readonly sql: Sql;
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly sshPrivateKey: string;
  readonly masterKey: string;
  readonly backupStore: BackupStore;
  /** Overrides for tests: lease timings, observe rotation, clock. */
  readonly tuning?: Partial<ControllerTuning>;
}

export interface ControllerTuning {
  readonly leaseTtlMs: number;
  readonly leaseRenewDeadlineMs: number;
  readonly leaseRetryPeriodMs: number;
  readonly hostObserveTtlMs: number;
  /** DEEP_OBSERVE_INTERVAL: every instance is deep-observed (drift found) at least this often. */
  readonly deepObserveIntervalMs: number;
  readonly gaugeIntervalMs: number;
  readonly now: () => Date;
}

const DEFAULT_TUNING: Omit<ControllerTuning, "deepObserveIntervalMs"> = {
  leaseTtlMs: 15_000,
  leaseRenewDeadlineMs: 10_000,
  leaseRetryPeriodMs: 2_000,
  // Views are tied to resync waves (one bulk observe per host per wave); this only bounds their age.
  hostObserveTtlMs: 10 * 60_000,
  gaugeIntervalMs: 15_000,
  now: () => new Date(),
};

export interface ControllerRuntime {
  readonly elector: LeaderElector;
  readonly reconciler: Reconciler;
  readonly driver: DokkuDriver;
  readonly metrics: ControllerMetrics;
  /** Enqueues a key now (high priority) when this replica leads; false otherwise. */
  enqueue(key: string): boolean;
  /** Resolves when `signal` aborts and every part has stopped. */
  run(signal: AbortSignal): Promise<void>;
}

export function createControllerRuntime(options: ControllerRuntimeOptions): ControllerRuntime {
  const tuning = { ...DEFAULT_TUNING, deepObserveIntervalMs: options.config.deepObserveIntervalMs, ...leaseTimings(options.config.leaderLeaseTtlMs), ...options.tuning };
  const { sql, config, logger, registry } = options;
  const metrics = createControllerMetrics(registry, { leaderElection: "reconciler" });
  metrics.initMetrics();
  const backupMetrics = createBackupMetrics(registry, options.backupStore.kind);
  const outboxMetrics = createOutboxMetrics(registry);
  const driver = createDokkuDriver({
    privateKey: options.sshPrivateKey,
    registry,
    logger: logger.child({ component: "dokku" }),
    hostConcurrency: config.hostConcurrency,
    commandTimeoutMs: config.dokkuCommandTimeoutMs,
    onHostKeyLearned: async (hostId, hostKey) => {
      await pinHostKey(sql, hostId, hostKey);
      logger.warn({ hostId }, "trusted a Dokku host key on first use and pinned it");
    },
  });
  const observer = new Observer({ driver, hostTtlMs: tuning.hostObserveTtlMs, deepIntervalMs: tuning.deepObserveIntervalMs, now: () => tuning.now().getTime() });
  const leader: { elector?: LeaderElector } = {};
  const reconciler = buildReconciler({
    sql,
    config,
    driver,
    observer,
    masterKey: options.masterKey,
    backupStore: options.backupStore,
    backupMetrics,
    now: tuning.now,
    epoch: () => leader.elector?.epoch() ?? undefined,
    onDrift: (kind) => metrics.drift.inc({ kind }),
    onConverged: (seconds) => metrics.convergeSeconds.observe(seconds),
    onBackedUp: (tier) => metrics.backupLastSuccess.set({ tier }, tuning.now().getTime() / 1000),
    ...(config.faultKillAfterActions ? { faultHook: killAfter(config.faultKillAfterActions, logger) } : {}),
  });
  let queue: WorkQueue | undefined;
  let term: Promise<void> | undefined;
  const elector = new LeaderElector({
    store: leaseStore(sql),
    logger: logger.child({ component: "leader" }),
    gauge: metrics.leaderElectionMasterStatus,
    ttlMs: tuning.leaseTtlMs,
    renewDeadlineMs: tuning.leaseRenewDeadlineMs,
    retryPeriodMs: tuning.leaseRetryPeriodMs,
    onStartedLeading: ({ epoch, signal }) => {
      logger.info({ epoch }, "leading: starting the controller");
      queue = new WorkQueue({ name: "instance", metrics: metrics.forQueue("instance") });
      term = runTerm({ ...options, tuning, metrics, backupMetrics, reconciler, observer, queue }, signal);
    },
    onStoppedLeading: async () => {
      logger.warn("no longer leading: controller stopped");
      await term;
      queue = undefined;
    },
  });
  leader.elector = elector;
  return {
    elector,
    reconciler,
    driver,
    metrics,
    enqueue: (key) => {
      if (!queue || queue.isShuttingDown()) return false;
      queue.add(key);
      return true;
    },
    run: async (signal) => {
      // Every replica delivers email, leader or not: the outbox claims rows with SKIP LOCKED.
      const outbox = runOutbox(outboxOptions({ ...config, sql, metrics: outboxMetrics, masterKey: options.masterKey, logger: logger.child({ component: "outbox" }) }), signal);
      await elector.start(signal);
      await term;
      await outbox;
      await driver.close();
    },
  };
}

export interface ReconcilerWiring {
  readonly sql: Sql;
  readonly config: Config;
  readonly driver: Driver;
  readonly observer: Observer;
  readonly masterKey: string;
  readonly backupStore: BackupStore;
  readonly backupMetrics?: BackupMetrics;
  readonly now: () => Date;
  readonly epoch: () => number | undefined;
  readonly onDrift?: (kind: string) => void;
  readonly onConverged?: (seconds: number) => void;
  readonly faultHook?: (point: "executed" | "journaled") => void;
  readonly onBackedUp?: (tier: string) => void;
}

/** Crash-safety fault injection (FAULT_KILL_AFTER_ACTIONS): SIGKILL at the configured point. */
function killAfter(fault: { count: number; point: "executed" | "journaled" }, logger: Logger): (point: "executed" | "journaled") => void {
  let seen = 0;
  logger.warn({ fault }, "FAULT INJECTION ENABLED: this process will kill itself (test-only setting)");
  return (point) => {
    if (point !== fault.point) return;
    seen += 1;
    if (seen === fault.count) process.kill(process.pid, "SIGKILL");
  };
}

/** The Reconciler over Postgres and a driver: shared by the daemon and the one-shot commands. */
export function buildReconciler(wiring: ReconcilerWiring): Reconciler {
  const { sql, config } = wiring;
  const backupWiring = {
    sql,
    store: wiring.backupStore,
    masterKey: wiring.masterKey,
    retentionMs: config.backups.retentionMs,
    manualPerDay: config.backups.manualPerDay,
    ...(wiring.backupMetrics ? { metrics: wiring.backupMetrics } : {}),
  };
  return new Reconciler({
    store: createInstanceStore(sql),
    journal: createJournal(sql),
    backups: createBackupPort(backupWiring),
    restores: createRestorePort(backupWiring),
    driver: wiring.driver,
    observer: wiring.observer,
    desiredOptions: {
      gracePeriodMs: config.gracePeriodMs,
      retentionPeriodMs: config.retentionPeriodMs,
      baseDomain: config.baseDomain,
      masterKey: wiring.masterKey,
      template: DEFAULT_TEMPLATE,
      imageAllowlist: config.imageAllowlist,
      tls: !config.baseDomain.endsWith("localhost"),
    },
    now: wiring.now,
    epoch: wiring.epoch,
    health: createHealthGate(sql),
    allowOrphanDestroy: config.allowOrphanDestroy,
    ...(wiring.onDrift ? { onDrift: wiring.onDrift } : {}),
    ...(wiring.onConverged ? { onConverged: wiring.onConverged } : {}),
    ...(wiring.faultHook ? { faultHook: wiring.faultHook } : {}),
    ...(wiring.onBackedUp ? { onBackedUp: wiring.onBackedUp } : {}),
  });
}

interface TermDeps extends ControllerRuntimeOptions {
  readonly tuning: ControllerTuning;
  readonly metrics: ControllerMetrics;
  readonly backupMetrics: BackupMetrics;
  readonly reconciler: Reconciler;
  readonly observer: Observer;
  readonly queue: WorkQueue;
}

/** Uploads a killed process left half done are older than this when a term starts. */
const STALE_UPLOAD_MS = 60 * 60_000;

/** Everything a leader runs; resolves when the term's signal aborts and all parts stopped. */
async function runTerm(deps: TermDeps, signal: AbortSignal): Promise<void> {
  const { sql, config, logger, metrics, reconciler, queue } = deps;
  const store = createInstanceStore(sql);
  const enqueue = (key: string): void => queue.add(key);
  const requests = new OperatorRequests(sql);
  const auditing = new Set<string>();
  const resync = new Resync({
    intervalMs: config.resyncIntervalMs,
    listKeys: async () => {
      // A new wave: the host audit fetches each host's view, which the wave's passes then share,
      // and settled checks read the database once for the wave. The audit is not awaited: a host
      // that hangs must not hold up the wave of every other host (passes join its fetch).
      deps.observer.beginWave();
      reconciler.beginWave();
      void auditHosts(deps, auditing);
      return store.listKeys();
    },
    enqueueLow: (key) => queue.add(key, { priority: "low" }),
    logger,
  });
  const fullPass = requests.wrap(async (key, signal, options) => {
    const result = await reconciler.reconcile(key, signal, options);
    logActions(logger, key, result.outcome);
    return result;
  });
  const controller = new Controller({
    name: "instance",
    queue,
    metrics,
    logger,
    maxConcurrentReconciles: config.maxConcurrentReconciles,
    // A resync pass over a settled instance is answered in memory (reconciler/settled.ts);
    // operator requests come at high priority, so they always get their full, deep pass.
    reconcile: async (key, ctx) => (ctx.priority === "low" ? await reconciler.settled(key, ctx.signal) : undefined) ?? fullPass(key, ctx),
  });
  const prober = new HealthProber({
    sql,
    registry: deps.registry,
    domainFor: defaultDomainFor(config.baseDomain),
    intervalMs: config.healthIntervalMs,
    onUnhealthy: (subscriptionId, _instanceId, components: readonly Component[]) => {
      logger.warn({ subscription: subscriptionId, components }, "components failing health probes: reconciling");
      enqueue(subscriptionId);
    },
    logger: logger.child({ component: "health" }),
  });
  const parts = [
    controller.start(signal),
    startSqlSource({ sql, enqueue, onRequest: (key, request) => requests.add(key, request), resyncAll: () => void resync.resyncAll(), logger }, signal),
    resync.start(signal),
    prober.start(signal),
    publishInstanceGauge(deps, signal),
    runScheduledJobs(sql, deps.tuning.now, logger.child({ component: "jobs" }), signal),
    runBackupJobs(
      { sql, store: deps.backupStore, masterKey: deps.masterKey, dailyAtMinute: config.backups.dailyAtMinute, retentionMs: config.backups.retentionMs, metrics: deps.backupMetrics, logger: logger.child({ component: "backups" }) },
      deps.tuning.now,
      signal,
    ),
    deps.backupStore.cleanupStale(STALE_UPLOAD_MS, signal).then(
      (cleaned) => cleaned > 0 && logger.info({ cleaned }, "removed partial uploads left by a stopped process"),
      (error: unknown) => logger.warn({ err: error }, "could not clean up partial uploads in the backup store"),
    ),
  ];
  const results = await Promise.allSettled(parts);
  for (const result of results) {
    if (result.status === "rejected") logger.error({ err: result.reason }, "controller part failed");
  }
}

/** Every action a pass took, at info, so an operator can follow the daemon without debug. */
function logActions(logger: Logger, subscription: string, outcome: PassOutcome): void {
  if (outcome.kind !== "planned" || !outcome.applied || outcome.actions.length === 0) return;
  const where = { subscription, instance: outcome.instanceId, subdomain: outcome.desired.subdomain };
  const lines = describePlan(outcome.actions);
  outcome.actions.forEach((action, index) => logger.info({ ...where, action: action.kind, app: "app" in action ? action.app : undefined }, lines[index] ?? action.kind));
  logger.info({ ...where, phase: outcome.desired.phase, status: outcome.status, actions: outcome.actions.length }, `${outcome.desired.subdomain}: ${outcome.status}`);
}

/**
 * Orphans and liveness per host, on every resync: reported, never destroyed by default. Hosts are
 * audited concurrently, each at most once at a time (`auditing` holds the ids in progress); never
 * throws.
 */
async function auditHosts(deps: TermDeps, auditing: Set<string>): Promise<void> {
  let hosts: Awaited<ReturnType<typeof listHosts>>;
  try {
    hosts = (await listHosts(deps.sql)).filter((host) => host.enabled && !auditing.has(host.id));
  } catch (error) {
    deps.logger.warn({ err: error }, "host audit failed: cannot list the hosts");
    return;
  }
  await Promise.all(hosts.map(async (host) => {
    auditing.add(host.id);
    try {
      const { view, orphans } = await hostOrphans(deps.sql, deps.observer, host);
      await markHostSeen(deps.sql, host.id, view.dokkuVersion);
      deps.metrics.orphanApps.set({ host: host.name }, orphans.length);
      if (orphans.length > 0) deps.logger.warn({ host: host.name, orphans }, "apps on the host belong to no instance (reported, not destroyed)");
    } catch (error) {
      deps.logger.warn({ host: host.name, err: error }, "host audit failed");
    } finally {
      auditing.delete(host.id);
    }
  }));
}

/** Apps on a host that look like an instance's but belong to no live instance; the shallow view too. */
export async function hostOrphans(sql: Sql, observer: Observer, host: HostRef, signal?: AbortSignal): Promise<{ view: ObservedHost; orphans: string[] }> {
  const view = await observer.host(host, signal);
  return { view, orphans: findOrphans(view.apps.keys(), await liveAppNames(sql, host.id)) };
}

/** `mindroom_instances{phase,tier,health}` from the database, refreshed while leading. */
async function publishInstanceGauge(deps: TermDeps, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const rows = await deps.sql<{ phase: string; tier: string; health: string; count: number }[]>`
        select i.status::text as phase, s.tier::text as tier, i.health_status::text as health, count(*)::int as count
        from public.instances i join public.subscriptions s on s.id = i.subscription_id
        group by 1, 2, 3`;
      deps.metrics.setInstanceCounts(rows);
    } catch (error) {
      deps.logger.warn({ err: error }, "could not refresh the instance gauge");
    }
    await sleep(deps.tuning.gaugeIntervalMs, undefined, { signal }).catch(() => {});
  }
}

/** Renew deadline at 2/3 of the lease and retries 7.5 times per lease, as controller-runtime's 15/10/2 s. */
export function leaseTimings(ttlMs: number): Pick<ControllerTuning, "leaseTtlMs" | "leaseRenewDeadlineMs" | "leaseRetryPeriodMs"> {
  return { leaseTtlMs: ttlMs, leaseRenewDeadlineMs: Math.round((ttlMs * 2) / 3), leaseRetryPeriodMs: Math.max(100, Math.round(ttlMs / 7.5)) };
}
