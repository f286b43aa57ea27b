/**
 * The in-process control object: fault injection, the command log, bulk seeding, and "by hand"
 * edits that simulate an operator touching the host (drift). Not part of Dokku's surface.
 */
import { join } from "node:path";

import { destroyApp } from "./cmd-apps.ts";
import type { Host } from "./context.ts";
import { defaultVhost, stopContainers } from "./context.ts";
import type { CommandMatcher, DropOptions, FailureRate, Faults, Latency } from "./faults.ts";
import type { CommandRecord } from "./server.ts";
import type { AppState } from "./state.ts";
import { isRunning, newApp, newCid, STORAGE_ROOT } from "./state.ts";

/** Read-only view of one app for tests. */
export interface AppView {
  name: string;
  config: Record<string, string>;
  domains: string[];
  mounts: string[];
  running: boolean;
  deployed: boolean;
  restore: boolean;
  image: string | null;
  limits: Record<string, Record<string, string>>;
  tls: boolean;
  unhealthy: boolean;
}

export interface SeedOptions {
  running?: boolean;
  /** Default true; false for large benchmarks (no listener per app; the ingress still answers). */
  serveHttp?: boolean;
  prefix?: string;
  image?: string;
}

export interface SandboxControl {
  setLatency(latency: Latency | null): void;
  setFailureRate(rate: number, opts?: Omit<FailureRate, "rate">): void;
  /** The next command matching `opts.match` is dropped: channel closed, no exit status. */
  dropNext(opts?: DropOptions): void;
  /**
   * TCP accepted but no SSH answer, and open channels stall (a command already running takes
   * effect but sends no more output and no exit status), until set back to false.
   */
  setUnresponsive(on: boolean): void;
  setUnhealthy(app: string, on: boolean): void;
  /** Containers exit with restore=true (crashed), listener closed. */
  crashApp(app: string): Promise<void>;
  /** Holds the deploy lock as a concurrent deploy would; returns the release function. */
  holdDeployLock(app: string): () => void;
  readonly commandCount: number;
  readonly commands: readonly CommandRecord[];
  resetCounters(): void;
  seedApps(n: number, opts?: SeedOptions): Promise<string[]>;
  apps(): string[];
  app(name: string): AppView | undefined;
  destroyAppByHand(name: string): Promise<void>;
  setConfigByHand(app: string, key: string, value: string): void;
  stopAppByHand(app: string): Promise<void>;
  /** Real directory behind storage entry `name` (write files here to back them up). */
  storageDir(name: string): string;
}

function view(app: AppState): AppView {
  return {
    name: app.name,
    config: Object.fromEntries([...app.env].map(([k, v]) => [k, v.toString()])),
    domains: [...app.domains],
    mounts: [...app.mounts],
    running: isRunning(app),
    deployed: app.deployed,
    restore: app.restore,
    image: app.image,
    limits: structuredClone(app.limits),
    tls: app.tls.enabled,
    unhealthy: app.unhealthy,
  };
}

export function createControl(host: Host, faults: Faults, log: CommandRecord[]): SandboxControl {
  const must = (name: string): AppState => {
    const a = host.store.apps.get(name);
    if (a === undefined) throw new Error(`sandbox: no app ${name}`);
    return a;
  };
  return {
    setLatency: (l) => void (faults.latency = l),
    setFailureRate: (rate, opts) => void (faults.failure = rate > 0 ? { rate, ...opts } : null),
    dropNext: (opts) => faults.addDrop(opts ?? {}),
    setUnresponsive: (on) => faults.setUnresponsive(on),
    setUnhealthy(app, on) {
      must(app).unhealthy = on;
      host.store.save();
    },
    crashApp: (app) => stopContainers({ host }, must(app), true),
    holdDeployLock: (app) => host.locks.acquire(app, "control"),
    get commandCount() {
      return log.length;
    },
    get commands() {
      return log;
    },
    resetCounters: () => void log.splice(0),
    seedApps: (n, opts) => seed(host, n, opts ?? {}),
    apps: () => host.store.names(),
    app: (name) => {
      const a = host.store.apps.get(name);
      return a === undefined ? undefined : view(a);
    },
    destroyAppByHand: async (name) => destroyApp({ host }, must(name)),
    setConfigByHand(app, key, value) {
      must(app).env.set(key, Buffer.from(value));
      host.store.save();
    },
    stopAppByHand: (app) => stopContainers({ host }, must(app)),
    storageDir: (name) => join(host.root, "storage", name),
  };
}

async function seed(host: Host, n: number, o: SeedOptions): Promise<string[]> {
  const names: string[] = [];
  const prefix = o.prefix ?? "seed";
  const start = host.store.apps.size;
  for (let i = 0; i < n; i++) {
    const name = `${prefix}-${start + i}`;
    const app = newApp(name, Math.floor(host.now() / 1000));
    const vhost = defaultVhost(host, name);
    if (vhost !== undefined) app.domains = [vhost];
    app.serveHttp = o.serveHttp ?? true;
    app.image = o.image ?? "nginx:1.27";
    app.deploySource = "docker-image";
    app.deployed = true;
    app.containers = [{ proc: "web", index: 1, state: o.running === false ? "exited" : "running", cid: newCid() }];
    app.restore = o.running !== false;
    host.store.apps.set(name, app);
    names.push(name);
  }
  host.store.save();
  await Promise.all(names.map((n2) => host.runtime.sync(n2)));
  return names;
}

export { STORAGE_ROOT };
export type { CommandMatcher };
