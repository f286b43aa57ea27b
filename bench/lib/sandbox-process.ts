/**
 * A sandbox Dokku host in a child process (sandbox-child.ts), so that the benchmark's CPU time
 * and RSS are the controller's alone, and a host's faults are injected from outside the daemon. Every request is answered over IPC within `REQUEST_MS`.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";

import { within } from "./child-process.ts";
import type { ChildApp, ChildRequest, ChildStats } from "./sandbox-child.ts";

/** Compiled (compiled.ts) next to a compiled parent, else through tsx. */
const COMPILED = import.meta.url.endsWith(".js");
const CHILD = fileURLToPath(new URL(COMPILED ? "./sandbox-child.js" : "./sandbox-child.ts", import.meta.url));
const START_MS = 30_000;
const REQUEST_MS = 30_000;

type Request = ChildRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

export interface SandboxProcess {
  readonly sshUrl: string;
  readonly hostKey: string;
  readonly ingressUrl: string;
  setLatency(ms: number): Promise<void>;
  resetCounters(): Promise<void>;
  stats(): Promise<ChildStats>;
  /** TCP accepted but no SSH answer, running commands hold their exit status, until false. */
  setUnresponsive(on: boolean): Promise<void>;
  /** The next command is dropped (its effect applied first or not), channel or whole connection. */
  dropNext(scope: "channel" | "connection", applyEffect: boolean): Promise<void>;
  /** The app answers 503 on every path (ignored when the app does not exist). */
  setUnhealthy(app: string, on: boolean): Promise<void>;
  apps(): Promise<ChildApp[]>;
  close(): Promise<void>;
}

interface Ready {
  readonly type: "ready";
  readonly sshUrl: string;
  readonly hostKey: string;
  readonly ingressUrl: string;
}

export async function startSandboxProcess(): Promise<SandboxProcess> {
  const child = fork(CHILD, [], { execArgv: COMPILED ? [] : ["--import", "tsx"], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const ready = await within(START_MS, "sandbox process did not start", new Promise<Ready>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`sandbox process exited with ${code} before it was ready`)));
    child.once("message", (message: Ready) => resolve(message));
  })).catch((error: unknown) => {
    child.kill();
    throw error;
  });
  const call = requester(child);
  return {
    sshUrl: ready.sshUrl,
    hostKey: ready.hostKey,
    ingressUrl: ready.ingressUrl,
    setLatency: async (ms) => void (await call({ op: "setLatency", ms })),
    resetCounters: async () => void (await call({ op: "resetCounters" })),
    stats: async () => (await call({ op: "stats" })) as ChildStats,
    setUnresponsive: async (on) => void (await call({ op: "setUnresponsive", on })),
    dropNext: async (scope, applyEffect) => void (await call({ op: "dropNext", scope, applyEffect })),
    setUnhealthy: async (app, on) => void (await call({ op: "setUnhealthy", app, on })),
    apps: async () => (await call({ op: "apps" })) as ChildApp[],
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      await call({ op: "close" }).catch(() => child.kill());
      await within(REQUEST_MS, "sandbox process did not exit", exited).catch(() => void child.kill("SIGKILL"));
    },
  };
}

function requester(child: ChildProcess): (request: Request) => Promise<unknown> {
  let next = 0;
  const waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  child.on("message", (message: { id?: number; result?: unknown; error?: string }) => {
    const entry = message.id === undefined ? undefined : waiting.get(message.id);
    if (!entry || message.id === undefined) return;
    waiting.delete(message.id);
    if (message.error !== undefined) entry.reject(new Error(`sandbox process: ${message.error}`));
    else entry.resolve(message.result);
  });
  child.on("exit", () => {
    for (const entry of waiting.values()) entry.reject(new Error("sandbox process exited"));
    waiting.clear();
  });
  return (request) => {
    const id = next++;
    const answer = new Promise<unknown>((resolve, reject) => waiting.set(id, { resolve, reject }));
    child.send({ ...request, id });
    return within(REQUEST_MS, `sandbox process did not answer ${request.op}`, answer);
  };
}
