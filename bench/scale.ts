/**
 * `npm run bench -- scale [--instances N] [--hosts H] [--latency MS] [--naive-instances M] [--timeout S] [--log-level L]`
 *
 * From an empty platform to N running instances on H sandbox Dokku hosts over real SSH (each SSH
 * command delayed by MS on the host), with real Postgres, then one steady-state pass over every
 * key with nothing to do. Measured: converge wall time, steady-state wall time and SSH commands,
 * CPU time and peak RSS of this process. The same workload then runs, in the same process with a
 * fresh database and fresh hosts, through the naive baseline (see bench/lib/naive-observer.ts:
 * per-app observation, deep observe every pass, one instance at a time), and the report gives
 * naive / ours. `--naive-instances M` runs the baseline on M instances instead (0 skips it), for
 * sizes where it would take hours; ratios are then per instance and say so.
 *
 * Prints one JSON object, then a readable table. CPU and memory are this process's, i.e. the
 * controller's: each sandbox host runs in its own process (bench/lib/sandbox-process.ts), whose
 * CPU time is reported apart ("host cpu s"), and Postgres runs apart. The bound is the converge
 * time if every host's HOST_CONCURRENCY slots were busy all along: 19 SSH commands per instance
 * (the provisioning sequence) × N × latency ÷ (hosts × HOST_CONCURRENCY); "converge/bound" is
 * how far from it the run was.
 */
import { parseArgs } from "node:util";

import { loadConfig } from "../src/config.ts";
import { openBenchPostgres } from "./lib/pg.ts";
import { type PhaseResult, type RunOptions, type RunResult,runScale } from "./lib/scale-run.ts";

interface Options {
  readonly instances: number;
  readonly hosts: number;
  readonly latencyMs: number;
  readonly naiveInstances: number;
  readonly timeoutMs: number;
  readonly logLevel: string;
}

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
    naiveInstances: number("naive-instances", values["naive-instances"], instances, 0),
    timeoutMs: number("timeout", values.timeout, 900, 1) * 1000,
    logLevel: values["log-level"] ?? "silent",
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
    ours = await runScale(pg, { ...common, mode: "ours", instances: options.instances } satisfies RunOptions);
    if (options.naiveInstances > 0) naive = await runScale(pg, { ...common, mode: "naive", instances: options.naiveInstances });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await pg.close();
  }
  const result = {
    benchmark: "scale",
    parameters: { instances: options.instances, hosts: options.hosts, latencyMs: options.latencyMs, naiveInstances: options.naiveInstances, postgres: pg.source },
    ours,
    naive,
    ratios: naive ? ratios(ours, options.instances, naive, options.naiveInstances) : null,
    bound: boundOf(options, ours),
  };
  process.stdout.write(`${JSON.stringify(result)}\n\n`);
  process.stdout.write(`${report(result.parameters, ours, naive, result.ratios)}\n`);
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

function report(parameters: { instances: number; hosts: number; latencyMs: number; naiveInstances: number }, ours: RunResult, naive: RunResult | null, r: Ratios | null): string {
  const runs = naive ? [ours, naive] : [ours];
  const sizes = [parameters.instances, parameters.naiveInstances];
  const rows = runs.map((run, i) => row(run, sizes[i] ?? parameters.instances));
  const lines = [
    `scale: ${parameters.hosts} sandbox hosts, ${parameters.latencyMs} ms per SSH command`,
    table(rows),
    "",
    ...runs.map((run) => `${run.mode}: ${run.description}`),
    ...runs.map((run) => `${run.mode} steady-state commands: ${describeCommands(run.steady)}`),
  ];
  if (r) {
    lines.push(`naive / ours (${r.basis}): converge time ×${r.convergeSeconds.toFixed(1)}, steady-state SSH commands ×${r.steadySshCommands.toFixed(1)}, steady-state time ×${r.steadySeconds.toFixed(1)}`);
  } else {
    lines.push("naive baseline not run (--naive-instances 0)");
  }
  const b = boundOf({ ...parameters, latencyMs: parameters.latencyMs }, ours);
  lines.push(`ours: bound ${b.boundSeconds.toFixed(1)} s (19 × N × latency ÷ (hosts × ${b.hostConcurrency})), converge ÷ bound ${b.convergeOverBound.toFixed(2)}, controller CPU ${b.cpuMsPerInstance.toFixed(1)} ms per instance, peak RSS ${ours.peakRssMb.toFixed(0)} MB`);
  return lines.join("\n");
}

/** Provisioning commands per instance (3 apps), the unit of the converge bound. */
const COMMANDS_PER_INSTANCE = 19;

function boundOf(options: { instances: number; hosts: number; latencyMs: number }, ours: RunResult) {
  const hostConcurrency = loadConfig({}).hostConcurrency;
  const boundSeconds = (COMMANDS_PER_INSTANCE * options.instances * options.latencyMs) / 1000 / (options.hosts * hostConcurrency);
  return {
    hostConcurrency,
    boundSeconds,
    convergeOverBound: ours.converge.seconds / boundSeconds,
    cpuMsPerInstance: (ours.converge.cpuSeconds * 1000) / options.instances,
  };
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
