/**
 * `mindroom-reconciler` as an operator runs it: `node src/bin.mjs ARGS` in a child process with
 * exactly `env`, never blocking this process (whose event loop may serve a sandbox host).
 */
import { execFile } from "node:child_process";

export interface CliResult {
  /** The exit status; null when the command was killed (its timeout passed). */
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function runCli(env: Record<string, string>, args: readonly string[], timeoutMs = 120_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, ["src/bin.mjs", ...args], { env, encoding: "utf8", timeout: timeoutMs }, (error, stdout, stderr) => {
      resolve({ status: error ? (typeof error.code === "number" ? error.code : null) : 0, stdout, stderr });
    });
  });
}
