/**
 * `mindroom-reconciler sandbox [--port N] [--dokku-version V] [--authorized-keys FILE]
 * [--state-dir DIR]`: runs one sandbox Dokku host until SIGINT/SIGTERM. Returns the exit code:
 * 0 after a clean stop, 2 for bad arguments (one line on stderr).
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import type { SandboxOptions } from "./index.ts";
import { startSandbox } from "./index.ts";
import { normalizeVersion } from "./version.ts";

function parseOptions(argv: string[]): SandboxOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      port: { type: "string" },
      "dokku-version": { type: "string" },
      "authorized-keys": { type: "string" },
      "state-dir": { type: "string" },
    },
  });
  const opts: SandboxOptions = {};
  if (values.port !== undefined) {
    const port = Number(values.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0-65535, got ${values.port}`);
    opts.port = port;
  }
  if (values["dokku-version"] !== undefined) opts.dokkuVersion = normalizeVersion(values["dokku-version"]);
  if (values["state-dir"] !== undefined) opts.stateDir = values["state-dir"];
  const keysFile = values["authorized-keys"];
  if (keysFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(keysFile, "utf8");
    } catch (e) {
      throw new Error(`cannot read --authorized-keys ${keysFile}: ${(e as Error).message}`);
    }
    opts.authorizedKeys = text.split("\n");
  }
  return opts;
}

/** Resolves when the process is asked to stop (or `stop` fires, for tests). */
function untilSignal(stop?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      stop?.removeEventListener("abort", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
    stop?.addEventListener("abort", done);
  });
}

export async function run(argv: string[], stop?: AbortSignal): Promise<number> {
  let opts: SandboxOptions;
  try {
    opts = parseOptions(argv);
  } catch (e) {
    process.stderr.write(`sandbox: ${(e as Error).message}\n`);
    return 2;
  }
  const sandbox = await startSandbox(opts);
  const out = process.stdout;
  out.write(`ssh url:      ${sandbox.sshUrl}\n`);
  out.write(`host key:     ${sandbox.hostKey}\n`);
  out.write(`ingress url:  ${sandbox.ingressUrl}\n`);
  out.write(`dokku:        ${sandbox.version}\n`);
  out.write(`state dir:    ${sandbox.stateDir}\n`);
  if (opts.authorizedKeys === undefined) {
    out.write("auth:         accepts ANY client key (this is a sandbox; pass --authorized-keys FILE to restrict)\n");
  }
  await untilSignal(stop);
  await sandbox.close();
  return 0;
}
