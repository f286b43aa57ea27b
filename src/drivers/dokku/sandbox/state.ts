/**
 * The sandbox host's state: apps (what Dokku keeps under /home/dokku/<app> and the plugin
 * property files) and storage directories. In memory; written to `<stateDir>/state.json` after
 * every mutation when persistence is on, so a restarted sandbox sees the same host.
 */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { z } from "zod";

/** One container of an app (`CONTAINER.web.1`): kept on stop, replaced on every deploy. */
export interface Container {
  proc: string;
  index: number;
  state: "running" | "exited";
  cid: string;
}

export interface AppState {
  name: string;
  createdAt: number;
  /** Config values as raw bytes (base64 on disk): `--encoded` may carry any byte. */
  env: Map<string, Buffer>;
  /** Explicit vhosts (`domains:add/set`); the default vhost is added at create time. */
  domains: string[];
  vhostEnabled: boolean;
  /** `host:container[:opts]` strings, in mount order. */
  mounts: string[];
  /** process type (`_default_` or `web`…) → key (`memory`, `cpu`…) → value. */
  limits: Record<string, Record<string, string>>;
  reservations: Record<string, Record<string, string>>;
  deploySource: string;
  image: string | null;
  deployed: boolean;
  restore: boolean;
  containers: Container[];
  /** `apps:lock` marker file (does not block deploys). */
  lockFile: boolean;
  tls: { enabled: boolean; issuedAt: number | null };
  letsencryptEmail: string | null;
  /** Control-API knobs, not Dokku state. */
  unhealthy: boolean;
  serveHttp: boolean;
}

const AppJson = z.object({
  name: z.string(),
  createdAt: z.number(),
  env: z.record(z.string(), z.string()),
  domains: z.array(z.string()),
  vhostEnabled: z.boolean(),
  mounts: z.array(z.string()),
  limits: z.record(z.string(), z.record(z.string(), z.string())),
  reservations: z.record(z.string(), z.record(z.string(), z.string())),
  deploySource: z.string(),
  image: z.string().nullable(),
  deployed: z.boolean(),
  restore: z.boolean(),
  containers: z.array(
    z.object({ proc: z.string(), index: z.number(), state: z.enum(["running", "exited"]), cid: z.string() }),
  ),
  lockFile: z.boolean(),
  tls: z.object({ enabled: z.boolean(), issuedAt: z.number().nullable() }),
  letsencryptEmail: z.string().nullable(),
  unhealthy: z.boolean(),
  serveHttp: z.boolean(),
});
const StateJson = z.object({ apps: z.array(AppJson), storageEntries: z.array(z.string()).default([]) });

export function newApp(name: string, createdAt: number): AppState {
  return {
    name,
    createdAt,
    env: new Map(),
    domains: [],
    vhostEnabled: true,
    mounts: [],
    limits: {},
    reservations: {},
    deploySource: "",
    image: null,
    deployed: false,
    restore: true,
    containers: [],
    lockFile: false,
    tls: { enabled: false, issuedAt: null },
    letsencryptEmail: null,
    unhealthy: false,
    serveHttp: true,
  };
}

export function newCid(): string {
  return randomBytes(32).toString("hex");
}

/** `Running` of ps:report: true, false or mixed. */
export function runningState(app: AppState): "true" | "false" | "mixed" {
  const up = app.containers.filter((c) => c.state === "running").length;
  if (up === 0) return "false";
  return up === app.containers.length ? "true" : "mixed";
}

export function isRunning(app: AppState): boolean {
  return app.containers.some((c) => c.state === "running");
}

/** Apps by name plus the set of storage entries created with `storage:create`. */
export class Store {
  readonly apps = new Map<string, AppState>();
  readonly storageEntries = new Set<string>();
  constructor(private readonly file: string | undefined) {}

  /** Loads `state.json` if it exists; a corrupt file is an error, never silently reset. */
  load(): void {
    if (this.file === undefined) return;
    let text: string;
    try {
      text = readFileSync(this.file, "utf8");
    } catch {
      return;
    }
    const parsed = StateJson.parse(JSON.parse(text));
    for (const a of parsed.apps) {
      const env = new Map(Object.entries(a.env).map(([k, v]) => [k, Buffer.from(v, "base64")] as const));
      this.apps.set(a.name, { ...a, env });
    }
    for (const e of parsed.storageEntries) this.storageEntries.add(e);
  }

  /**
   * Writes atomically (tmp + rename), readable by this user only: the file holds every app's
   * environment (secrets, derived admin tokens). chmod covers a stale tmp file left by a crash,
   * which writeFileSync's mode would not change. Cheap enough to call after every command.
   */
  save(): void {
    if (this.file === undefined) return;
    const apps = [...this.apps.values()].map((a) => ({
      ...a,
      env: Object.fromEntries([...a.env].map(([k, v]) => [k, v.toString("base64")])),
    }));
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, JSON.stringify({ apps, storageEntries: [...this.storageEntries] }), { mode: 0o600 });
    chmodSync(tmp, 0o600);
    renameSync(tmp, this.file);
  }

  /** Sorted like `DokkuApps()` (byte order; names starting with `.` or upper case skipped). */
  names(): string[] {
    return [...this.apps.keys()].filter((n) => !/^[.A-Z]/.test(n)).sort(byteOrder);
  }
}

export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}

export const STORAGE_ROOT = "/var/lib/dokku/data/storage";

/** Real directory behind a host path: storage entries live under `<root>/storage`. */
export function realPath(root: string, hostPath: string): string {
  if (hostPath.startsWith(`${STORAGE_ROOT}/`)) return join(root, "storage", hostPath.slice(STORAGE_ROOT.length + 1));
  return join(root, "hostfs", hostPath.replace(/^\/+/, ""));
}
