/**
 * The Node flags `npm start` gives the daemon (package.json `scripts.start`, shaped
 * `node <flags> src/bin.mjs serve`; the Dockerfile and the systemd unit pass the same, which
 * test/deploy/node-flags.test.ts checks), so that a benchmark measures the daemon as it runs.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const PACKAGE_JSON = fileURLToPath(new URL("../../package.json", import.meta.url));

export function startNodeFlags(): string[] {
  const { scripts } = JSON.parse(readFileSync(PACKAGE_JSON, "utf8")) as { scripts: { start: string } };
  const match = /^node((?: --\S+)*) src\/bin\.mjs serve$/.exec(scripts.start);
  if (!match) throw new Error(`package.json scripts.start is not "node [--flags] src/bin.mjs serve": ${scripts.start}`);
  return match[1]!.split(" ").filter(Boolean);
}
