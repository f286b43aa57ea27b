// `npm run build` (and `prepare`, so `npm install` runs it): compiles src/ to dist/ with the
// TypeScript compiler, emit only (`npm run typecheck` checks the types), then stamps dist/ so
// src/bin.mjs can tell a build that is current from one older than the sources. Where typescript
// is not installed (`npm ci --omit=dev`, as in deploy/Dockerfile) it builds nothing and says so:
// src/bin.mjs then runs the sources through tsx.
import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
let tsc;
try {
  tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
} catch {
  process.stdout.write("mindroom-reconciler build: typescript is not installed; no dist/ (src/bin.mjs runs the sources through tsx)\n");
  process.exit(0);
}
rmSync(join(root, "dist"), { recursive: true, force: true });
const result = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--noCheck"], { stdio: "inherit" });
if (result.status !== 0) process.exit(result.status ?? 1);
writeFileSync(join(root, "dist", ".build-stamp"), `${new Date().toISOString()}\n`);
