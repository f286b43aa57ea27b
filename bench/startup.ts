/**
 * `npm run bench -- startup [--runs N] [--json]`
 *
 * How long `npm start` takes to answer /readyz 200 on a warm data directory, and the daemon's
 * resident memory once ready, for the build in dist/ (what src/bin.mjs runs when the build is
 * current) against the baseline of the same sources compiled at run time by tsx (what it runs
 * otherwise). Each start is a `serve` process of its own in sandbox mode with embedded Postgres
 * (started and stopped with it, as `npm start` does), on one data directory created by a first,
 * unmeasured start. The two are started alternately, `--runs` times each (default 5); reported
 * per variant: median and max time to ready, median RSS 3 s after ready, and build ÷ tsx ratios.
 * Needs a current build (`npm run build`).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

import { endsWithThisProcess, stopChild } from "./lib/child-process.ts";
import { median, round } from "./lib/stats.ts";
import { freePort } from "./lib/webhook-processes.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const READY_MS = 120_000;
const SETTLE_MS = 3_000;

/**
 * The two ways src/bin.mjs can run `serve`, spelled out so each can be forced: entry files written
 * to the run's directory (not `node -e`: the daemon's worker thread inherits node's flags).
 */
const VARIANTS = {
  build: `const { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, "dist", "cli.js")).href)});\nprocess.exitCode = await main(["serve"]);\n`,
  tsx: `const { register } = await import(${JSON.stringify(import.meta.resolve("tsx/esm/api"))});\nregister();\nconst { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, "src", "cli.ts")).href)});\nprocess.exitCode = await main(["serve"]);\n`,
} as const;
type Variant = keyof typeof VARIANTS;

interface Start {
  readonly readyMs: number;
  readonly rssMb: number;
}

export interface VariantResult {
  readonly readyMsMedian: number;
  readonly readyMsMax: number;
  readonly rssMbMedian: number;
}

async function startOnce(variant: Variant, dir: string): Promise<Start> {
  const port = await freePort();
  const entry = join(dir, `${variant}.mjs`);
  await writeFile(entry, VARIANTS[variant]);
  const dataDir = join(dir, "data");
  const started = performance.now();
  const child = spawn(process.execPath, [entry], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: "warn" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  endsWithThisProcess(child);
  let stderr = "";
  child.stderr!.on("data", (chunk: Buffer) => (stderr = (stderr + chunk.toString("utf8")).slice(-2_000)));
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`bench startup: ${variant} exited with ${child.exitCode} before it was ready: ${stderr.trim()}`);
      if (performance.now() - started > READY_MS) throw new Error(`bench startup: ${variant} did not answer /readyz 200 within ${READY_MS} ms`);
      const status = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.status, () => 0);
      if (status === 200) break;
      await sleep(20);
    }
    const readyMs = performance.now() - started;
    await sleep(SETTLE_MS);
    const status = await readFile(`/proc/${child.pid}/status`, "utf8");
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return { readyMs, rssMb: rssKb / 1024 };
  } finally {
    await stopChild(child, "SIGINT");
  }
}

function summarise(starts: Start[]): VariantResult {
  return { readyMsMedian: Math.round(median(starts.map((s) => s.readyMs))), readyMsMax: Math.round(Math.max(...starts.map((s) => s.readyMs))), rssMbMedian: Math.round(median(starts.map((s) => s.rssMb))) };
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { runs: { type: "string" }, json: { type: "boolean" } } });
  const runs = Number(values.runs ?? 5);
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`bench startup: --runs must be a positive integer, got ${values.runs}`);
  if (!existsSync(join(ROOT, "dist", ".build-stamp"))) throw new Error("bench startup: no build in dist/: run `npm run build` first");
  const dataDir = await mkdtemp(join(tmpdir(), "mindroom-bench-startup-"));
  await chmod(dataDir, 0o711); // run as root, embedded Postgres runs initdb as another user, who must reach DATA_DIR
  try {
    await startOnce("build", dataDir); // creates the embedded database and the sandbox keys: not measured
    const starts: Record<Variant, Start[]> = { build: [], tsx: [] };
    for (let i = 0; i < runs; i++) {
      for (const variant of ["tsx", "build"] as const) starts[variant].push(await startOnce(variant, dataDir));
    }
    const build = summarise(starts.build);
    const tsx = summarise(starts.tsx);
    const result = { runs, build, tsx, readyRatio: round(build.readyMsMedian / tsx.readyMsMedian), rssRatio: round(build.rssMbMedian / tsx.rssMbMedian) };
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
      return;
    }
    process.stdout.write(
      [
        `startup: serve to /readyz 200 on a warm data directory (embedded Postgres, sandbox mode), ${runs} starts each, alternating`,
        `variant  ready ms (median / max)  RSS MB (median, ${SETTLE_MS / 1000} s after ready)`,
        `tsx      ${tsx.readyMsMedian} / ${tsx.readyMsMax}  ${tsx.rssMbMedian}`,
        `build    ${build.readyMsMedian} / ${build.readyMsMax}  ${build.rssMbMedian}`,
        `build ÷ tsx: ready ${result.readyRatio}, RSS ${result.rssRatio}`,
      ].join("\n") + "\n",
    );
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}
