/**
 * `npm run bench -- scale [--instances N] [--hosts H] [--latency MS] [--naive-instances M] [--timeout S] [--log-level L] [--workers W] [--heap-snapshot FILE] [--cpu-prof DIR] [--json]`
 *
 * From an empty platform to N running instances on H sandbox Dokku hosts over real SSH (each SSH
 * command delayed by MS on the host), with real Postgres, then one steady-state pass over every
 * key with nothing to do. Measured: converge wall time, steady-state wall time and SSH commands,
 * CPU time and peak RSS of the controller. Each run happens in a process of its own, compiled to
 * JavaScript as the daemon's build is (lib/scale-process.ts). The same workload then runs, in
 * another such process with a fresh database and fresh hosts, through the naive baseline (see bench/lib/naive-observer.ts:
 * per-app observation, deep observe every pass, one instance at a time), and the report gives
 * naive / ours. `--naive-instances M` runs the baseline on M instances instead (0 skips it), for
 * sizes where it would take hours (default: min(N, 200)); ratios are then per instance and say so.
 *
 * Prints a readable table, or with `--json` one JSON object alone (`summarize`). CPU, memory and
 * event-loop delay are the measured process's, i.e. the controller's: each sandbox host runs in its own
 * process (bench/lib/sandbox-process.ts), whose CPU time is reported apart ("host cpu s"), and
 * Postgres runs apart. SSH commands are split into observing (`*:report`, `*:list`, `*:export`,
 * `*:active`) and mutating (the rest). The bound is the converge time if every host's
 * HOST_CONCURRENCY slots were busy with mutating commands all along: mutating commands per
 * instance (as measured) × N × latency ÷ (hosts × HOST_CONCURRENCY); converge ÷ bound is how far
 * from it the run was.
 */
import { parseArgs } from "node:util";

import { loadConfig } from "../src/config.ts";
import { openBenchPostgres } from "./lib/pg.ts";
import { runScale } from "./lib/scale-process.ts";
import type { PhaseResult, RunOptions, RunResult } from "./lib/scale-run.ts";
import { round } from "./lib/stats.ts";

interface Options {
  readonly instances: number;
  readonly hosts: number;
  readonly latencyMs: number;
  readonly naiveInstances: number;
  readonly timeoutMs: number;
  readonly logLevel: string;
  readonly json: boolean;
  /** MAX_CONCURRENT_RECONCILES for `ours`; the daemon's default when absent. */
  readonly workers: number | undefined;
  /** Where to write a heap snapshot of the controller once converged (figures then inflated). */
  readonly heapSnapshot: string | undefined;
  /** Runs the measured process (ours and naive) under `node --cpu-prof`, profiles written here. */
  readonly cpuProfDir: string | undefined;
}

/** The naive baseline provisions one instance at a time: beyond this many it would take hours. */
const NAIVE_DEFAULT_MAX = 200;

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      instances: { type: "string" },
      hosts: { type: "string" },
      latency: { type: "string" },
      "naive-instances": { type: "string" },
      timeout: { type: "string" },
      "log-level": { type: "string" },
      json: { type: "boolean" },
      workers: { type: "string" },
      "heap-snapshot": { type: "string" },
      "cpu-prof": { type: "string" },
    },
  });
  const number = (name: string, raw: string | undefined, fallback: number, min: number): number => {
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < min) throw new Error(`bench scale: --${name} must be an integer >= ${min}, got ${raw}`);
    return value;
  };
  const instances = number("instances", values.instances, 200, 1);
  return {
    instances,
    hosts: number("hosts", values.hosts, 4, 1),
    latencyMs: number("latency", values.latency, 20, 0),
    naiveInstances: number("naive-instances", values["naive-instances"], Math.min(instances, NAIVE_DEFAULT_MAX), 0),
    timeoutMs: number("timeout", values.timeout, 900, 1) * 1000,
    logLevel: values["log-level"] ?? "silent",
    json: values.json ?? false,
    workers: values.workers === undefined ? undefined : number("workers", values.workers, 0, 1),
    heapSnapshot: values["heap-snapshot"],
    cpuProfDir: values["cpu-prof"],
  };
}

export async function run(argv: string[]): Promise<void> {
  const options = parse(argv);
  const interrupted = new AbortController();
  const onSignal = (): void => interrupted.abort(new Error("interrupted"));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let ours: RunResult;
  let naive: RunResult | null = null;
  const pg = await openBenchPostgres(loadConfig({ DATABASE_URL: process.env.DATABASE_URL }).databaseUrl);
  try {
    const common = { hosts: options.hosts, latencyMs: options.latencyMs, timeoutMs: options.timeoutMs, logLevel: options.logLevel, signal: interrupted.signal };
    ours = await runScale(pg, { ...common, mode: "ours", instances: options.instances, ...(options.workers !== undefined && { workers: options.workers }), ...(options.heapSnapshot !== undefined && { heapSnapshot: options.heapSnapshot }) } satisfies RunOptions, options.cpuProfDir);
    if (options.naiveInstances > 0) naive = await runScale(pg, { ...common, mode: "naive", instances: options.naiveInstances }, options.cpuProfDir);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await pg.close();
  }
  const r = naive ? ratios(ours, options.instances, naive, options.naiveInstances) : null;
  const summary = summarize(options, ours, naive, r);
  if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`${report(options, ours, naive, r, summary)}\n`);
}

/** Observing Dokku subcommands; every other command changes something. */
const OBSERVING = /:(report|list|export|active)$/;

function commandSplit(phase: PhaseResult): { mutating: number; observing: number } {
  let mutating = 0;
  let observing = 0;
  for (const [name, count] of Object.entries(phase.byCommand)) {
    if (OBSERVING.test(name)) observing += count;
    else mutating += count;
  }
  return { mutating, observing };
}

/** The figures of a run, as `--json` prints them. */
function summarize(options: Options, ours: RunResult, naive: RunResult | null, r: Ratios | null) {
  const split = commandSplit(ours.converge);
  const hostConcurrency = loadConfig({}).hostConcurrency;
  const mutatingPerInstance = split.mutating / options.instances;
  const boundSeconds = (mutatingPerInstance * options.instances * options.latencyMs) / 1000 / (options.hosts * hostConcurrency);
  return {
    instances: options.instances,
    hosts: options.hosts,
    latencyMs: options.latencyMs,
    hostConcurrency,
    sshPerInstance: { mutating: round(mutatingPerInstance), observing: round(split.observing / options.instances) },
    convergeSeconds: round(ours.converge.seconds),
    boundSeconds: round(boundSeconds),
    convergeOverBound: round(ours.converge.seconds / boundSeconds),
    controller: {
      peakRssMb: round(ours.peakRssMb),
      atPeakMb: ours.atPeakMb,
      cpuSeconds: round(ours.converge.cpuSeconds + ours.steady.cpuSeconds),
      convergeCpuSeconds: round(ours.converge.cpuSeconds),
      eventLoopP99Ms: round(ours.eventLoopP99Ms),
      eventLoopMaxMs: round(ours.eventLoopMaxMs),
    },
    steady: { sshCommands: ours.steady.sshCommands, sshCommandsPerHost: ours.steady.sshCommandsPerHost, seconds: round(ours.steady.seconds), cpuSeconds: round(ours.steady.cpuSeconds) },
    errors: ours.converge.reconcileErrors + ours.steady.reconcileErrors,
    hostCpuSeconds: round(ours.converge.hostCpuSeconds + ours.steady.hostCpuSeconds),
    naive: naive && r ? { instances: options.naiveInstances, convergeSeconds: round(naive.converge.seconds), steadySshCommands: naive.steady.sshCommands, ratios: r } : null,
  };
}

interface Ratios {
  /** "total" when both ran the same N; "per instance" when the baseline ran fewer. */
  readonly basis: "total" | "per instance";
  readonly convergeSeconds: number;
  readonly steadySshCommands: number;
  readonly steadySeconds: number;
}

function ratios(ours: RunResult, n: number, naive: RunResult, m: number): Ratios {
  const scale = n / m; // 1 when both ran the same workload
  return {
    basis: n === m ? "total" : "per instance",
    convergeSeconds: (naive.converge.seconds * scale) / ours.converge.seconds,
    steadySshCommands: (naive.steady.sshCommands * scale) / Math.max(1, ours.steady.sshCommands),
    steadySeconds: (naive.steady.seconds * scale) / ours.steady.seconds,
  };
}

function report(options: Options, ours: RunResult, naive: RunResult | null, r: Ratios | null, summary: ReturnType<typeof summarize>): string {
  const runs = naive ? [ours, naive] : [ours];
  const sizes = [options.instances, options.naiveInstances];
  const rows = runs.map((run, i) => row(run, sizes[i] ?? options.instances));
  const lines = [
    `scale: ${options.hosts} sandbox hosts, ${options.latencyMs} ms per SSH command`,
    table(rows),
    "",
    ...runs.map((run) => `${run.mode}: ${run.description}`),
    ...runs.map((run) => `${run.mode} converge commands: ${describeCommands(run.converge)}`),
    ...runs.map((run) => `${run.mode} steady-state commands: ${describeCommands(run.steady)}`),
  ];
  if (r) {
    lines.push(`naive / ours (${r.basis}): converge time ×${r.convergeSeconds.toFixed(1)}, steady-state SSH commands ×${r.steadySshCommands.toFixed(1)}, steady-state time ×${r.steadySeconds.toFixed(1)}`);
  } else {
    lines.push("naive baseline not run (--naive-instances 0)");
  }
  const s = summary;
  lines.push(
    `ours: ${s.sshPerInstance.mutating} mutating + ${s.sshPerInstance.observing} observing SSH commands per instance; bound ${s.boundSeconds} s (mutating × N × latency ÷ (hosts × ${s.hostConcurrency})), converge ÷ bound ${s.convergeOverBound}`,
    `controller: peak RSS ${s.controller.peakRssMb} MB (then V8 heap ${s.controller.atPeakMb.heapTotal} MB reserved, ${s.controller.atPeakMb.heapUsed} MB used; external ${s.controller.atPeakMb.external} MB; other ${s.controller.atPeakMb.other} MB), CPU ${s.controller.cpuSeconds} s, event-loop delay p99 ${s.controller.eventLoopP99Ms} ms (max ${s.controller.eventLoopMaxMs} ms); steady pass ${s.steady.sshCommands} SSH commands, ${s.steady.seconds} s, ${s.steady.cpuSeconds} s CPU`,
  );
  return lines.join("\n");
}

function row(run: RunResult, instances: number): Record<string, string | number> {
  return {
    run: run.mode,
    instances,
    workers: run.workers,
    "converge s": run.converge.seconds,
    "converge cmds": run.converge.sshCommands,
    "converge cpu s": run.converge.cpuSeconds,
    "steady s": run.steady.seconds,
    "steady cmds": run.steady.sshCommands,
    "steady cpu s": run.steady.cpuSeconds,
    "host cpu s": run.converge.hostCpuSeconds + run.steady.hostCpuSeconds,
    errors: run.converge.reconcileErrors + run.steady.reconcileErrors,
    "peak rss MB": run.peakRssMb,
    "loop p99 ms": run.eventLoopP99Ms,
  };
}

function describeCommands(phase: PhaseResult): string {
  const parts = Object.entries(phase.byCommand)
    .sort((a, b) => b[1] - a[1])
    .map(([name, count]) => `${name} ${count}`);
  return `${parts.join(", ") || "none"} (per host: ${phase.sshCommandsPerHost.join(", ")}; ${phase.reconciles} reconciles)`;
}

function table(rows: Array<Record<string, string | number>>): string {
  const keys = Object.keys(rows[0] ?? {});
  const cell = (v: string | number): string => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(2)) : v);
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k] ?? "").length)));
  const line = (values: string[]): string => values.map((v, i) => v.padStart(widths[i] ?? 0)).join("  ");
  return [line(keys), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(keys.map((k) => cell(r[k] ?? ""))))].join("\n");
}
