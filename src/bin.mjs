#!/usr/bin/env node
// Entry point of the `mindroom-reconciler` command. It runs the JavaScript build in dist/ (made by
// `npm run build`, which `npm install` runs through `prepare`) when no source file is newer than
// that build. Otherwise (no build, sources edited since, or `bench`, whose files are not built) it
// registers tsx's loader and runs the TypeScript sources as they are. The build starts faster and
// uses less memory: nothing is compiled at run time and there is no loader thread (README,
// Development).
import { readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const argv = process.argv.slice(2);
const src = dirname(fileURLToPath(import.meta.url));
const stamp = join(src, "..", "dist", ".build-stamp");

/** The newest modification time of any file under `dir`. */
function newestUnder(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

function buildIsCurrent() {
  const built = statSync(stamp, { throwIfNoEntry: false });
  return built !== undefined && newestUnder(src) <= built.mtimeMs;
}

let main;
if (argv[0] !== "bench" && buildIsCurrent()) {
  ({ main } = await import("../dist/cli.js"));
} else {
  const { register } = await import("tsx/esm/api");
  register();
  ({ main } = await import("./cli.ts"));
}
process.exitCode = await main(argv);
