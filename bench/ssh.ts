/**
 * `npm run bench -- ssh [--latency MS] [--commands N] [--apps 10,100,1000] [--dokku 0.38]`
 *
 * Against the sandbox Dokku host, over real SSH:
 * 1. commands per second: sequential on one connection, pipelined on one connection (up to 8
 *    channels), and pipelined over a pool of 2 connections;
 * 2. `observeHost` wall time and SSH command count for 10, 100 and 1,000 apps, against the naive
 *    observation (one `ps:report <app>` per app, pipelined over the same pool) in the same run.
 * Prints one JSON object, then a readable table.
 */
import pLimit from "p-limit";
import { Registry } from "prom-client";

import { createDokkuDriver, type DokkuDriver } from "../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../src/drivers/dokku/sandbox/index.ts";
import type { HostRef } from "../src/reconciler/types.ts";

interface Options {
  readonly latencyMs: number;
  readonly commands: number;
  readonly appCounts: number[];
  readonly dokkuVersion: string;
}

function parseArgs(argv: string[]): Options {
  const value = (flag: string): string | undefined => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const number = (flag: string, fallback: number): number => {
    const raw = value(flag);
    const parsed = raw === undefined ? fallback : Number(raw);
    if (!Number.isFinite(parsed) || parsed < 0) throw new Error(`bench ssh: ${flag} must be a non-negative number`);
    return parsed;
  };
  return {
    latencyMs: number("--latency", 0),
    commands: number("--commands", 300),
    appCounts: (value("--apps") ?? "10,100,1000").split(",").map(Number),
    dokkuVersion: value("--dokku") ?? "0.38",
  };
}

interface Throughput {
  readonly mode: string;
  readonly commands: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly peakChannels: number;
  readonly connections: number;
}

interface Observation {
  readonly apps: number;
  readonly observeHostMs: number;
  readonly observeHostCommands: number;
  readonly naiveMs: number;
  readonly naiveCommands: number;
  readonly speedup: number;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { ms: performance.now() - start, value };
}

function newDriver(connectionsPerHost: number): DokkuDriver {
  const privateKey = generateEd25519KeyPair().private;
  return createDokkuDriver({ privateKey, registry: new Registry(), connectionsPerHost, commandTimeoutMs: 600_000 });
}

async function throughput(host: HostRef, mode: string, connections: number, concurrency: number, n: number): Promise<Throughput> {
  const driver = newDriver(connections);
  try {
    await driver.runRaw(host, ["version"]); // connect outside the measurement
    const limit = pLimit(concurrency);
    const { ms } = await timed(() => Promise.all(Array.from({ length: n }, () => limit(() => driver.runRaw(host, ["version"])))));
    const stats = driver.stats(host);
    return { mode, commands: n, seconds: ms / 1000, perSecond: n / (ms / 1000), peakChannels: stats.peakChannels, connections: stats.connectionsOpened };
  } finally {
    await driver.close();
  }
}

async function observation(sb: Sandbox, host: HostRef, driver: DokkuDriver, apps: string[]): Promise<Observation> {
  await driver.observeHost(host); // version probe cached, connections open
  let before = sb.control.commandCount;
  const bulk = await timed(() => driver.observeHost(host));
  const observeHostCommands = sb.control.commandCount - before;
  if (bulk.value.apps.size < apps.length) throw new Error(`observeHost saw ${bulk.value.apps.size} apps, expected ${apps.length}`);
  before = sb.control.commandCount;
  const limit = pLimit(16);
  const naive = await timed(() => Promise.all(apps.map((app) => limit(() => driver.runRaw(host, ["ps:report", app])))));
  const naiveCommands = sb.control.commandCount - before;
  return { apps: apps.length, observeHostMs: bulk.ms, observeHostCommands, naiveMs: naive.ms, naiveCommands, speedup: naive.ms / bulk.ms };
}

function table(rows: Array<Record<string, string | number>>): string {
  const keys = Object.keys(rows[0] ?? {});
  const cell = (v: string | number): string => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(1)) : v);
  const widths = keys.map((k) => Math.max(k.length, ...rows.map((r) => cell(r[k] ?? "").length)));
  const line = (values: string[]): string => values.map((v, i) => v.padStart(widths[i] ?? 0)).join("  ");
  return [line(keys), line(widths.map((w) => "-".repeat(w))), ...rows.map((r) => line(keys.map((k) => cell(r[k] ?? ""))))].join("\n");
}

export async function run(argv: string[]): Promise<void> {
  const options = parseArgs(argv);
  const sb = await startSandbox({ dokkuVersion: options.dokkuVersion, authorizedKeys: null });
  const host: HostRef = { id: "bench", name: "bench", sshUrl: sb.sshUrl, hostKey: sb.hostKey };
  try {
    if (options.latencyMs > 0) sb.control.setLatency(options.latencyMs);
    const n = options.commands;
    const rates = [
      await throughput(host, "sequential, 1 connection", 1, 1, n),
      await throughput(host, "pipelined, 1 connection", 1, 64, n),
      await throughput(host, "pipelined, pool of 2", 2, 64, n),
    ];
    const driver = newDriver(2);
    const observations: Observation[] = [];
    const apps: string[] = [];
    try {
      for (const count of options.appCounts) {
        apps.push(...(await sb.control.seedApps(count - apps.length, { serveHttp: false, prefix: "bench" })));
        observations.push(await observation(sb, host, driver, apps));
      }
    } finally {
      await driver.close();
    }
    const result = { benchmark: "ssh", dokkuVersion: sb.version, latencyMs: options.latencyMs, throughput: rates, observeHost: observations };
    process.stdout.write(`${JSON.stringify(result)}\n\n`);
    process.stdout.write(`${table(rates.map((r) => ({ mode: r.mode, commands: r.commands, "cmd/s": r.perSecond, "peak channels": r.peakChannels, connections: r.connections })))}\n\n`);
    process.stdout.write(
      `${table(observations.map((o) => ({ apps: o.apps, "observeHost ms": o.observeHostMs, "observeHost cmds": o.observeHostCommands, "naive ms": o.naiveMs, "naive cmds": o.naiveCommands, "naive/bulk": o.speedup })))}\n`,
    );
  } finally {
    await sb.close();
  }
}
