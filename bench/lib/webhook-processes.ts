/**
 * The processes of the webhook benchmark, each apart from the benchmark's own: the real daemon
 * (`mindroom-reconciler serve`, as `npm start` runs it, its JSON log at info going to a file), the
 * minimal baseline handler (webhook-baseline.ts) and, per measured phase, a load generator
 * (webhook-load.ts). Every wait on them is bounded and says what did not happen.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { open } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { endsWithThisProcess, runInChildProcess, stopChild, within } from "./child-process.ts";
import { startNodeFlags } from "./start-flags.ts";
import type { LoadRequest, LoadSamples } from "./webhook-load.ts";

const BIN = fileURLToPath(new URL("../../src/bin.mjs", import.meta.url));
const BASELINE = fileURLToPath(new URL("./webhook-baseline.ts", import.meta.url));
const LOAD = fileURLToPath(new URL("./webhook-load.ts", import.meta.url));
const READY_MS = 90_000;
const BASELINE_START_MS = 30_000;
/** A load phase may overrun its duration by this much (start-up, the last answers). */
const LOAD_SLACK_MS = 60_000;

export interface Endpoint {
  readonly url: string;
  stop(): Promise<void>;
}

/** A free loopback port: the daemon takes its port from PORT and does not report it otherwise. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * `node <npm start's flags> src/bin.mjs serve` with the benchmark's database and webhook secret, in sandbox mode (no
 * DOKKU_HOSTS: its own sandbox Dokku host, as after `npm start`); `cpuProfDir` adds --cpu-prof.
 * Resolves once /readyz answers 200.
 */
export async function startDaemon(options: { databaseUrl: string; secret: string; dir: string; cpuProfDir?: string }): Promise<Endpoint> {
  const port = await freePort();
  const log = await open(join(options.dir, "daemon.log"), "a");
  const nodeArgs = [...startNodeFlags(), ...(options.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${options.cpuProfDir}`] : [])];
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, DATABASE_URL: options.databaseUrl, STRIPE_WEBHOOK_SECRET: options.secret, PORT: String(port), DATA_DIR: join(options.dir, "data"), LOG_LEVEL: "info" };
  const child = spawn(process.execPath, [...nodeArgs, BIN, "serve"], { env, stdio: ["ignore", log.fd, log.fd] });
  endsWithThisProcess(child);
  const stop = async (): Promise<void> => {
    await stopChild(child, "SIGTERM");
    await log.close();
  };
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(`${base}/readyz`, child, join(options.dir, "daemon.log"));
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `${base}/webhooks/stripe`, stop };
}

async function waitReady(url: string, child: ChildProcess, logPath: string): Promise<void> {
  const deadline = Date.now() + READY_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the daemon exited with ${child.exitCode} before it was ready (log: ${logPath})`);
    const status = await fetch(url, { signal: AbortSignal.timeout(2_000) }).then((res) => res.status, () => 0);
    if (status === 200) return;
    await sleep(200);
  }
  throw new Error(`the daemon did not answer /readyz with 200 within ${READY_MS} ms (log: ${logPath})`);
}

/** The baseline handler on its own port, inserting through a pool as large as the daemon's webhook pool. */
export async function startBaseline(options: { databaseUrl: string; secret: string; poolMax: number }): Promise<Endpoint> {
  const env = { PATH: process.env.PATH, DATABASE_URL: options.databaseUrl, WEBHOOK_SECRET: options.secret, POOL_MAX: String(options.poolMax) };
  const child = fork(BASELINE, [], { execArgv: ["--import", "tsx"], env, stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const port = await within(BASELINE_START_MS, "the baseline handler did not start", new Promise<number>((resolve, reject) => {
    child.once("message", (message: { port: number }) => resolve(message.port));
    child.once("exit", (code) => reject(new Error(`the baseline handler exited with ${code} before it listened`)));
  })).catch(async (error: unknown) => {
    await stopChild(child, "SIGKILL");
    throw error;
  });
  return { url: `http://127.0.0.1:${port}/webhooks/stripe`, stop: () => stopChild(child, "disconnect") };
}

/** One open-loop phase from a fresh generator process: its samples, to be summarized with the handler's other phases. */
export async function runLoadProcess(request: LoadRequest): Promise<LoadSamples> {
  return runInChildProcess<LoadRequest, LoadSamples>(LOAD, request, {
    limitMs: request.seconds * 1000 + LOAD_SLACK_MS,
    timeoutMessage: `the load generator did not finish ${request.rate}/s for ${request.seconds} s`,
    label: "load generator",
  });
}
