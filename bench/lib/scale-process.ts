/**
 * Runs one scale run in a child process of its own, compiled to JavaScript as the daemon's build
 * is (compiled.ts), so that the CPU, peak RSS and event-loop delay it reports are the
 * controller's as users run it (with `npm start`'s Node flags): no benchmark driver, no Postgres,
 * no tsx in the process. The sandbox hosts run in processes of their own again
 * (sandbox-process.ts), compiled as well.
 */
import { fork } from "node:child_process";

import { compileForBench } from "./compiled.ts";
import type { BenchPostgres } from "./pg.ts";
import type { ScaleReply, ScaleRequest } from "./scale-child.ts";
import type { RunOptions, RunResult } from "./scale-run.ts";
import { startNodeFlags } from "./start-flags.ts";

let compiled: Promise<string> | undefined;

/** `cpuProfDir`: the measured process runs under `node --cpu-prof` and writes its profile there. */
export async function runScale(pg: BenchPostgres, options: RunOptions, cpuProfDir?: string): Promise<RunResult> {
  options.signal.throwIfAborted();
  const entry = await (compiled ??= compileForBench(["bench/lib/scale-child.ts", "bench/lib/sandbox-child.ts"]));
  const db = await pg.createDatabase(options.mode, { max: 1 });
  try {
    const { signal, ...rest } = options;
    const execArgv = [...startNodeFlags(), ...(cpuProfDir ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : [])];
    return await inChild(entry, execArgv, { databaseUrl: db.url, options: rest }, signal);
  } finally {
    await db.drop();
  }
}

function inChild(entry: string, execArgv: string[], request: ScaleRequest, signal: AbortSignal): Promise<RunResult> {
  const child = fork(entry, [], { execArgv, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const onAbort = (): void => void child.kill("SIGTERM");
  signal.addEventListener("abort", onAbort, { once: true });
  return new Promise<RunResult>((resolve, reject) => {
    let reply: ScaleReply | undefined;
    child.on("message", (message: ScaleReply) => (reply = message));
    child.once("error", reject);
    child.once("exit", (code, exitSignal) => {
      signal.removeEventListener("abort", onAbort);
      if (reply && "result" in reply) return resolve(reply.result);
      if (reply) return reject(new Error(`bench scale (${request.options.mode}): ${reply.error}`));
      reject(new Error(`bench scale (${request.options.mode}): the measured process ended (${exitSignal ?? `exit ${code}`}) without a result`));
    });
    child.send(request);
  });
}
