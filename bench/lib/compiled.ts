/**
 * Benchmark code compiled as the daemon's build is (tsc, emit only, `.ts` imports rewritten to
 * `.js`), so that a measured process runs plain JavaScript as `npm start` does from `dist/`, without
 * tsx compiling at run time (about 45 MB of RSS and the CPU of the first imports).
 *
 * The output goes to `.bench-build/` in the repository (not a temporary directory) so that the
 * compiled files still resolve `node_modules` and `migrations/` by walking up from where they are.
 */
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const BENCH_BUILD_DIR = join(ROOT, ".bench-build");
const COMPILE_TIMEOUT_MS = 180_000;

/**
 * Compiles `entries` (repository paths such as `bench/lib/scale-child.ts`) and every module they
 * import; resolves to the compiled first entry's absolute path (the others lie next to their
 * sources' places in the same tree). Throws with tsc's output when it fails.
 */
export async function compileForBench(entries: readonly [string, ...string[]]): Promise<string> {
  await mkdir(BENCH_BUILD_DIR, { recursive: true });
  const project = join(BENCH_BUILD_DIR, "tsconfig.json");
  const config = {
    extends: relative(BENCH_BUILD_DIR, join(ROOT, "tsconfig.json")),
    compilerOptions: { noEmit: false, outDir: ".", rootDir: "..", rewriteRelativeImportExtensions: true },
    files: entries.map((entry) => join("..", entry)),
    include: [],
  };
  await writeFile(project, `${JSON.stringify(config, null, 2)}\n`);
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  await run(process.execPath, [tsc, "-p", project, "--noCheck"]);
  return join(BENCH_BUILD_DIR, entries[0].replace(/\.ts$/, ".js"));
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], timeout: COMPILE_TIMEOUT_MS });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code, signal) => (code === 0 ? resolve() : reject(new Error(`compiling the benchmark failed (${signal ?? `exit ${code}`}):\n${output}`))));
  });
}
