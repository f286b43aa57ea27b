/** A `mindroom-reconciler serve` child process, for leadership and crash-safety tests. */
import { type ChildProcess, spawn } from "node:child_process";
import { createInterface } from "node:readline";

export interface ServeProcess {
  readonly child: ChildProcess;
  /** Resolves with the HTTP port once the daemon listens. */
  readonly port: Promise<number>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The value of leader_election_master_status, or undefined when /metrics does not answer. */
  leading(): Promise<boolean | undefined>;
  kill(signal: NodeJS.Signals): void;
  output(): string;
}

export function startServe(env: Record<string, string>): ServeProcess {
  const child = spawn(process.execPath, ["src/bin.mjs", "serve"], {
    env: { PATH: process.env.PATH ?? "", PORT: "0", LOG_LEVEL: "info", HEALTH_INTERVAL: "1h", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  let resolvePort: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (resolvePort = resolve));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream! }).on("line", (line) => {
      log += `${line}\n`;
      const match = /listening on http:\/\/[0-9.:[\]]+:(\d+) /.exec(line);
      if (match) resolvePort(Number(match[1]));
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return {
    child,
    port,
    exited,
    leading: async () => {
      try {
        const response = await fetch(`http://127.0.0.1:${await port}/metrics`, { signal: AbortSignal.timeout(2000) });
        const match = /^leader_election_master_status\{name="reconciler"\} (\d)/m.exec(await response.text());
        return match ? match[1] === "1" : undefined;
      } catch {
        return undefined;
      }
    },
    kill: (signal) => child.kill(signal),
    output: () => log,
  };
}

/**
 * Runs `serve` until `done` holds (then SIGTERM) or the process kills itself at the injected fault
 * (`FAULT_KILL_AFTER_ACTIONS`); fails when it exits otherwise or neither happens within 60 s.
 */
export async function runServeUntil(env: Record<string, string>, fault: string | undefined, done: () => Promise<boolean>): Promise<"killed" | "done"> {
  const serve = startServe({ ...env, ...(fault ? { FAULT_KILL_AFTER_ACTIONS: fault } : {}) });
  let exited = false;
  void serve.exited.then(() => (exited = true));
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (exited) {
      const { signal } = await serve.exited;
      if (signal !== "SIGKILL") throw new Error(`serve exited without the injected kill:\n${serve.output()}`);
      return "killed";
    }
    if (await done()) {
      serve.kill("SIGTERM");
      await serve.exited;
      return "done";
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  serve.kill("SIGKILL");
  throw new Error(`serve neither crashed nor finished within 60 s:\n${serve.output().slice(-3000)}`);
}
