/**
 * One run of the scale benchmark: a fresh database and fresh sandbox hosts, N instances inserted
 * in bulk, the real Reconciler (buildReconciler, the daemon's wiring) driven by the real
 * WorkQueue and Controller until every instance runs, then one steady-state pass over every key.
 *
 * Modes differ only in observation and workers:
 * - ours: the daemon's Observer (shallow host view shared by all workers for 2 s, deep rotation
 *   set to a day so the steady state is shallow) and MAX_CONCURRENT_RECONCILES workers;
 * - naive: NaiveObserver (per-app `ps:report`, deep observe of every app on every pass) and one
 *   worker, i.e. one instance at a time.
 *
 * Both modes run the daemon's SQL LISTEN source (placement bumps the generation, and its NOTIFY
 * brings the instance back for the pass that confirms it). Not in the loop, in either mode: leader
 * election (the lease is taken once, in a private database), the periodic resync and the health
 * prober. Keys are enqueued once by the benchmark, as the first resync of a new leader would.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { writeHeapSnapshot } from "node:v8";

import { type Logger, pino } from "pino";
import type { Sql } from "postgres";
import { Registry } from "prom-client";

import { loadConfig } from "../../src/config.ts";
import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createDokkuDriver, type DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { SANDBOX_MAX_COMMAND_BYTES } from "../../src/drivers/dokku/sandbox/index.ts";
import { Controller } from "../../src/reconciler/controller.ts";
import { createControllerMetrics } from "../../src/reconciler/metrics.ts";
import { Observer } from "../../src/reconciler/observe.ts";
import { WorkQueue } from "../../src/reconciler/queue.ts";
import type { Reconciler } from "../../src/reconciler/reconcile.ts";
import { buildReconciler } from "../../src/runtime/controller.ts";
import { startSqlSource } from "../../src/sources/sql.ts";
import { connect } from "../../src/state/db.ts";
import { upsertHost } from "../../src/state/hosts.ts";
import { createInstanceStore } from "../../src/state/instances.ts";
import { leaseStore, RECONCILER_LEASE } from "../../src/state/lease.ts";
import { NaiveObserver } from "./naive-observer.ts";
import { type ResourceSample, ResourceSampler } from "./resources.ts";
import type { ChildStats } from "./sandbox-child.ts";
import { type SandboxProcess, startSandboxProcess } from "./sandbox-process.ts";
import { insertWorkload } from "./workload.ts";

export type Mode = "ours" | "naive";

/** What a run is told; its process makes its own abort signal (scale-child.ts). */
export interface RunOptions {
  readonly mode: Mode;
  readonly instances: number;
  readonly hosts: number;
  readonly latencyMs: number;
  /** Give up converging after this long. */
  readonly timeoutMs: number;
  readonly logLevel: string;
  /** Workers of `ours` (MAX_CONCURRENT_RECONCILES); the daemon's default when absent. */
  readonly workers?: number;
  /** Aborts the run (Ctrl-C): the waits throw, and everything started is cleaned up. */
  readonly signal: AbortSignal;
  /** Writes a heap snapshot of the controller here once converged (inflates peak RSS and event-loop delay). */
  readonly heapSnapshot?: string;
}

export interface PhaseResult {
  readonly seconds: number;
  readonly sshCommands: number;
  readonly sshCommandsPerHost: number[];
  readonly byCommand: Record<string, number>;
  readonly reconciles: number;
  readonly reconcileErrors: number;
  /** CPU time of the controller (this process; the sandbox hosts run in their own). */
  readonly cpuSeconds: number;
  /** CPU time of the sandbox hosts together. */
  readonly hostCpuSeconds: number;
}

export interface RunResult {
  readonly mode: Mode;
  readonly description: string;
  readonly workers: number;
  readonly converge: PhaseResult;
  readonly steady: PhaseResult;
  readonly peakRssMb: number;
  readonly startRssMb: number;
  /** At the RSS peak, MB: V8's heap (reserved and live), memory outside it (Buffers, native), the rest of RSS (code, stacks, malloc arenas). */
  readonly atPeakMb: { readonly heapTotal: number; readonly heapUsed: number; readonly external: number; readonly other: number };
  /** Event-loop delay of the controller over converge and steady state (perf_hooks, 10 ms resolution). */
  readonly eventLoopP99Ms: number;
  readonly eventLoopMaxMs: number;
}

const DESCRIPTIONS: Record<Mode, string> = {
  ours: "shared shallow host view (one bulk ps:report per host per resync wave; apps changed since re-read one by one), deep observe only on change, MAX_CONCURRENT_RECONCILES workers",
  naive: "per pass: ps:report <app> for each of the instance's apps + deep observe (observeApp) of each app, no cache, 1 worker",
};

const DAY_MS = 24 * 60 * 60_000;
const PROGRESS_EVERY_MS = 15_000;

interface World {
  readonly sql: Sql;
  readonly sandboxes: SandboxProcess[];
  readonly driver: DokkuDriver;
  readonly queue: WorkQueue;
  readonly metrics: ReturnType<typeof createControllerMetrics>;
  readonly keys: string[];
  readonly workers: number;
  readonly observer: Observer;
  readonly reconciler: Reconciler;
}

/**
 * The run, in this process: its CPU, RSS and event-loop delay are what is reported, so call it in
 * a process of its own (scale-process.ts). `databaseUrl` is a fresh, migrated database.
 */
export async function runScaleHere(databaseUrl: string, options: RunOptions): Promise<RunResult> {
  const cleanup: Array<() => Promise<void>> = [];
  const sampler = new ResourceSampler();
  try {
    const sql = connect(databaseUrl, { max: 20, applicationName: "mindroom-bench" });
    cleanup.push(() => sql.end({ timeout: 5 }));
    const sandboxes = await startSandboxes(options, cleanup);
    const world = await wire(sql, sandboxes, options, cleanup);
    sampler.start();
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const converge = await measure(world, sampler, () => converged(world, options));
    if (options.heapSnapshot) writeHeapSnapshot(options.heapSnapshot);
    const steady = await measure(world, sampler, () => steadyPass(world, options.signal));
    loop.disable();
    const rss = sampler.stop();
    const eventLoop = { eventLoopP99Ms: loop.percentile(99) / 1e6, eventLoopMaxMs: loop.max / 1e6 };
    return { mode: options.mode, description: DESCRIPTIONS[options.mode], workers: world.workers, converge, steady, ...mb(rss), ...eventLoop };
  } finally {
    sampler.stop();
    for (const step of cleanup.reverse()) await step().catch((error: unknown) => process.stderr.write(`bench scale: cleanup failed: ${String(error)}\n`));
  }
}

/** One process per host, so that CPU time and RSS measured here are the controller's alone. */
async function startSandboxes(options: RunOptions, cleanup: Array<() => Promise<void>>): Promise<SandboxProcess[]> {
  const sandboxes: SandboxProcess[] = [];
  for (let i = 0; i < options.hosts; i++) {
    const sandbox = await startSandboxProcess();
    cleanup.push(() => sandbox.close());
    await sandbox.setLatency(options.latencyMs);
    sandboxes.push(sandbox);
  }
  return sandboxes;
}

async function wire(sql: Sql, sandboxes: SandboxProcess[], options: RunOptions, cleanup: Array<() => Promise<void>>): Promise<World> {
  const capacity = Math.ceil(options.instances / options.hosts);
  for (const [i, sandbox] of sandboxes.entries()) {
    await upsertHost(sql, { name: `bench-${i}`, sshUrl: sandbox.sshUrl, ingressUrl: sandbox.ingressUrl, hostKey: sandbox.hostKey, capacity, maxCommandBytes: SANDBOX_MAX_COMMAND_BYTES });
  }
  await insertWorkload(sql, options.instances);
  const config = loadConfig({ LOG_LEVEL: options.logLevel });
  const logger = pino({ level: options.logLevel }, pino.destination(2));
  const registry = new Registry();
  const metrics = createControllerMetrics(registry);
  metrics.initMetrics();
  const privateKey = generateEd25519KeyPair().private;
  const driver = createDokkuDriver({ privateKey, registry, hostConcurrency: config.hostConcurrency, logger: logger.child({ component: "dokku" }) });
  cleanup.push(() => driver.close());
  // A private database and one process: the lease is taken once instead of run by an elector.
  const backupDir = await mkdtemp(join(tmpdir(), "mindroom-bench-backups-"));
  cleanup.push(() => rm(backupDir, { recursive: true, force: true }));
  const lease = await leaseStore(sql).acquireOrRenew({ name: RECONCILER_LEASE, holder: "bench-scale", ttlMs: DAY_MS });
  const now = (): number => Date.now();
  const observer = options.mode === "ours" ? new Observer({ driver, hostTtlMs: DAY_MS, deepIntervalMs: DAY_MS, now }) : new NaiveObserver(driver, now);
  const reconciler = buildReconciler({ sql, config, driver, observer, masterKey: "bench-master-key-0123456789abcdef0123456789", backupStore: createLocalStore(backupDir), now: () => new Date(), epoch: () => lease.epoch });
  const workers = options.mode === "ours" ? (options.workers ?? config.maxConcurrentReconciles) : 1;
  const queue = new WorkQueue({ name: "instance", metrics: metrics.forQueue("instance") });
  const controller = new Controller({
    name: "instance",
    queue,
    metrics,
    logger,
    maxConcurrentReconciles: workers,
    reconcile: reconcileFn(reconciler, options.mode),
  });
  const stop = new AbortController();
  const running = controller.start(stop.signal);
  cleanup.push(async () => {
    stop.abort();
    await running;
  });
  await listen(sql, queue, logger, stop, cleanup);
  return { sql, sandboxes, driver, queue, metrics, keys: await createInstanceStore(sql).listKeys(), workers, observer, reconciler };
}

/**
 * The daemon's SQL source: placement bumps an instance's generation, and the NOTIFY it sends is
 * what brings the instance back for the pass that confirms the new generation. Resolves once
 * LISTEN is in place; the benchmark enqueues every key itself, so (re)connects enqueue nothing.
 */
async function listen(sql: Sql, queue: WorkQueue, logger: Logger, stop: AbortController, cleanup: Array<() => Promise<void>>): Promise<void> {
  let listening!: () => void;
  const ready = new Promise<void>((resolve) => (listening = resolve));
  const source = startSqlSource({ sql, enqueue: (key) => queue.add(key), resyncAll: () => listening(), logger }, stop.signal);
  cleanup.push(() => {
    stop.abort();
    return source;
  });
  await Promise.race([ready, source]);
}

/** As the daemon's: a resync (low-priority) pass over a settled instance is answered in memory. */
function reconcileFn(reconciler: Reconciler, mode: Mode) {
  return async (key: string, ctx: { signal: AbortSignal; priority: "high" | "low" }): Promise<{ requeueAfterMs?: number }> =>
    (mode === "ours" && ctx.priority === "low" ? await reconciler.settled(key, ctx.signal) : undefined) ?? reconciler.reconcile(key, ctx.signal);
}

/** Runs a phase from a clean slate of counters and returns what it cost. */
async function measure(world: World, sampler: ResourceSampler, phase: () => Promise<void>): Promise<PhaseResult> {
  for (const sandbox of world.sandboxes) await sandbox.resetCounters();
  const hostCpu = await hostCpuSeconds(world.sandboxes);
  const before = await counters(world);
  const cpu = process.cpuUsage();
  const start = performance.now();
  await phase();
  const seconds = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  sampler.sample();
  const after = await counters(world);
  const stats = await Promise.all(world.sandboxes.map((sandbox) => sandbox.stats()));
  const perHost = stats.map((s) => s.commandCount);
  return {
    seconds,
    sshCommands: perHost.reduce((a, b) => a + b, 0),
    sshCommandsPerHost: perHost,
    byCommand: byCommand(stats),
    reconciles: after.reconciles - before.reconciles,
    reconcileErrors: after.errors - before.errors,
    cpuSeconds: (used.user + used.system) / 1e6,
    hostCpuSeconds: stats.reduce((total, s) => total + s.cpuSeconds, 0) - hostCpu,
  };
}

/** A resync wave: every key enqueued at low priority, as the daemon's resync does after `beginWave`. */
function wave(world: World): void {
  world.observer.beginWave();
  world.reconciler.beginWave();
  for (const key of world.keys) world.queue.add(key, { priority: "low" });
}

/** Enqueues every key and waits until every instance is running at its current generation. */
async function converged(world: World, options: RunOptions): Promise<void> {
  wave(world);
  const deadline = Date.now() + options.timeoutMs;
  let nextProgress = Date.now() + PROGRESS_EVERY_MS;
  for (;;) {
    const [row] = await world.sql<{ done: number; total: number }[]>`
      select count(*) filter (where status = 'running' and observed_generation = generation)::int as done, count(*)::int as total
      from public.instances`;
    if (row && row.done === row.total && row.total === options.instances) break;
    if (Date.now() >= nextProgress) {
      process.stderr.write(`bench scale (${options.mode}): ${row?.done ?? 0}/${options.instances} instances running\n`);
      nextProgress += PROGRESS_EVERY_MS;
    }
    if (Date.now() > deadline) throw new Error(`not converged after ${options.timeoutMs} ms: ${row?.done ?? 0} of ${options.instances} instances running`);
    await sleep(100, undefined, { signal: options.signal });
  }
  await idle(world.queue, options.signal);
}

/** Enqueues every key once and waits for the queue to drain: a pass with nothing to do. */
async function steadyPass(world: World, signal: AbortSignal): Promise<void> {
  wave(world);
  await idle(world.queue, signal);
}

async function idle(queue: WorkQueue, signal: AbortSignal): Promise<void> {
  while (queue.len() > 0 || queue.inFlight() > 0) await sleep(5, undefined, { signal });
}

async function counters(world: World): Promise<{ reconciles: number; errors: number }> {
  const sum = async (metric: { get(): Promise<{ values: Array<{ value: number }> }> }): Promise<number> =>
    (await metric.get()).values.reduce((total, entry) => total + entry.value, 0);
  return { reconciles: await sum(world.metrics.reconcileTotal), errors: await sum(world.metrics.reconcileErrors) };
}

async function hostCpuSeconds(sandboxes: readonly SandboxProcess[]): Promise<number> {
  const stats = await Promise.all(sandboxes.map((sandbox) => sandbox.stats()));
  return stats.reduce((total, s) => total + s.cpuSeconds, 0);
}

/** Commands by Dokku subcommand across all sandboxes. */
function byCommand(stats: readonly ChildStats[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const host of stats) for (const [name, count] of Object.entries(host.byCommand)) counts[name] = (counts[name] ?? 0) + count;
  return counts;
}

function mb(rss: ResourceSample): Pick<RunResult, "peakRssMb" | "startRssMb" | "atPeakMb"> {
  const { heapTotal, heapUsed, external } = rss.atPeak;
  const toMb = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
  return {
    peakRssMb: rss.peakBytes / 2 ** 20,
    startRssMb: rss.startBytes / 2 ** 20,
    atPeakMb: { heapTotal: toMb(heapTotal), heapUsed: toMb(heapUsed), external: toMb(external), other: toMb(rss.peakBytes - heapTotal - external) },
  };
}
