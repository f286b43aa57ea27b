/**
 * Runs one scale run in a child process of its own, compiled to JavaScript as the daemon's build
 * is (compiled.ts), so that the CPU, peak RSS and event-loop delay it reports are the
 * controller's as users run it (with `npm start`'s Node flags): no benchmark driver, no Postgres,
 * no tsx in the process. The sandbox hosts run in processes of their own again
 * (sandbox-process.ts), compiled as well.
 */
import { runInChildProcess } from "./child-process.ts";
import { compileForBench } from "./compiled.ts";
import type { BenchPostgres } from "./pg.ts";
import type { ScaleRequest } from "./scale-child.ts";
import type { RunOptions, RunResult } from "./scale-run.ts";
import { startNodeFlags } from "./start-flags.ts";

const SETUP_AND_STEADY_MS = 10 * 60_000;

let compiled: Promise<string> | undefined;

/** `cpuProfDir`: the measured process runs under `node --cpu-prof` and writes its profile there. */
export async function runScale(pg: BenchPostgres, options: RunOptions, cpuProfDir?: string): Promise<RunResult> {
  options.signal.throwIfAborted();
  const entry = await (compiled ??= compileForBench(["bench/lib/scale-child.ts", "bench/lib/sandbox-child.ts"]));
  const db = await pg.createDatabase(options.mode, { max: 1 });
  try {
    const { signal, ...rest } = options;
    const execArgv = [...startNodeFlags(), ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : [])];
    const label = `bench scale (${options.mode})`;
    // Converging is bounded by timeoutMs; starting the hosts and the steady pass take far less.
    const limitMs = 2 * options.timeoutMs + SETUP_AND_STEADY_MS;
    return await runInChildProcess<ScaleRequest, RunResult>(entry, { databaseUrl: db.url, options: rest }, { execArgv, signal, label, limitMs, timeoutMessage: `${label} did not finish` });
  } finally {
    await db.drop();
  }
}
