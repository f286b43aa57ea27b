/**
 * One sandbox Dokku host in its own process, for the scale and chaos benchmarks: started by
 * sandbox-process.ts, driven over the IPC channel. It prints nothing; its parent reads its
 * address on "ready", asks for counters and its own CPU time and RSS, and injects faults.
 */
import { startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";

export type ChildRequest =
  | { readonly id: number; readonly op: "setLatency"; readonly ms: number }
  | { readonly id: number; readonly op: "resetCounters" }
  | { readonly id: number; readonly op: "stats" }
  | { readonly id: number; readonly op: "setUnresponsive"; readonly on: boolean }
  | { readonly id: number; readonly op: "dropNext"; readonly scope: "channel" | "connection"; readonly applyEffect: boolean }
  | { readonly id: number; readonly op: "setUnhealthy"; readonly app: string; readonly on: boolean }
  | { readonly id: number; readonly op: "apps" }
  | { readonly id: number; readonly op: "close" };

/** One app as the host sees it. */
export interface ChildApp {
  readonly name: string;
  readonly running: boolean;
  readonly unhealthy: boolean;
}

export interface ChildStats {
  readonly commandCount: number;
  /** Commands by Dokku subcommand (flags such as `--quiet` skipped). */
  readonly byCommand: Record<string, number>;
  readonly cpuSeconds: number;
  readonly rssBytes: number;
}

const send = (message: object): void => void process.send?.(message);

// Nothing probes the apps here, and one HTTP listener per app would exhaust the ephemeral ports
// at 10,000 instances (30,000 apps): deploys failed with EADDRINUSE and were retried.
const sandbox = await startSandbox({ dokkuVersion: "0.38", authorizedKeys: null, serveHttp: false });
process.on("disconnect", () => void sandbox.close().finally(() => process.exit(0)));
process.on("message", (request: ChildRequest) => {
  void answer(request).then(
    (result) => send({ id: request.id, result }),
    (error: unknown) => send({ id: request.id, error: String(error) }),
  );
});
send({ type: "ready", sshUrl: sandbox.sshUrl, hostKey: sandbox.hostKey, ingressUrl: sandbox.ingressUrl });

async function answer(request: ChildRequest): Promise<unknown> {
  switch (request.op) {
    case "setLatency":
      return sandbox.control.setLatency(request.ms);
    case "resetCounters":
      return sandbox.control.resetCounters();
    case "stats":
      return stats();
    case "setUnresponsive":
      return sandbox.control.setUnresponsive(request.on);
    case "dropNext":
      return sandbox.control.dropNext({ scope: request.scope, applyEffect: request.applyEffect });
    case "setUnhealthy":
      return sandbox.control.app(request.app) ? sandbox.control.setUnhealthy(request.app, request.on) : undefined;
    case "apps":
      return sandbox.control.apps().flatMap((name): ChildApp[] => {
        const app = sandbox.control.app(name);
        return app ? [{ name, running: app.running, unhealthy: app.unhealthy }] : [];
      });
    case "close":
      await sandbox.close();
      setImmediate(() => process.exit(0));
      return undefined;
  }
}

function stats(): ChildStats {
  const byCommand: Record<string, number> = {};
  for (const record of sandbox.control.commands) {
    const name = record.argv.find((arg) => !arg.startsWith("--")) ?? "(none)";
    byCommand[name] = (byCommand[name] ?? 0) + 1;
  }
  const cpu = process.cpuUsage();
  return { commandCount: sandbox.control.commandCount, byCommand, cpuSeconds: (cpu.user + cpu.system) / 1e6, rssBytes: process.memoryUsage.rss() };
}
