/**
 * The sandbox Dokku host (DESIGN.md §12): an in-process SSH server that behaves like Dokku's
 * `dokku` user to the byte (reference/dokku-cli.md), with real HTTP for running apps and faults
 * on demand. `startSandbox()` resolves once SSH and the ingress listen on 127.0.0.1; `close()`
 * stops every listener and, without a `stateDir`, removes the temporary directory.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import ssh2 from "ssh2";

import { generateEd25519KeyPair } from "../keys.ts";
import type { Host } from "./context.ts";
import { DeployLocks } from "./context.ts";
import type { SandboxControl } from "./control.ts";
import { createControl } from "./control.ts";
import { Faults, seededRandom } from "./faults.ts";
import { HttpRuntime } from "./http.ts";
import type { CommandRecord } from "./server.ts";
import { SshFrontend } from "./server.ts";
import { ensureDir, Store } from "./state.ts";
import { normalizeVersion } from "./version.ts";

export type { AppView, SandboxControl, SeedOptions } from "./control.ts";
export type { CommandMatcher, DropOptions, FailureRate, Latency } from "./faults.ts";
export { healthPath } from "./http.ts";
export type { CommandRecord } from "./server.ts";
export type { DokkuVersion } from "./version.ts";
export { KNOWN_VERSIONS } from "./version.ts";

export interface SandboxOptions {
  port?: number;
  /** Bind address; 127.0.0.1 by default. */
  host?: string;
  /** `0.30.0`, `0.34.0`, `0.38.27` (default) or the `0.30`/`0.34`/`0.38` shorthands. */
  dokkuVersion?: string;
  /** OpenSSH public key lines; null/undefined accepts any correctly signed key. */
  authorizedKeys?: string[] | null;
  /** Persist apps, storage and host key here; without it a temp dir is removed on close. */
  stateDir?: string;
  hostKeyPem?: string;
  /** Seed for the failure-rate and latency dice (deterministic runs). */
  seed?: number;
  /** Global vhost (default `sandbox.localhost`); null: "Global server virtual host not set". */
  globalVhost?: string | null;
  /** Host-wide letsencrypt email; null makes `letsencrypt:enable` fail without one. */
  letsencryptEmail?: string | null;
  /**
   * Whether running apps serve HTTP, each on a loopback port of its own (default true; the ingress
   * answers for running apps either way). False for hosts of thousands of apps: 10,000 instances are 30,000 listeners, more than the ephemeral
   * port range (32768-60999 by default) holds, and deploys then fail with EADDRINUSE.
   */
  serveHttp?: boolean;
}

/**
 * The longest command line the sandbox accepts. Its SSH server (ssh2) drops any packet over 35000
 * bytes, and an exec request carries the command plus a few hundred bytes of framing, MAC and
 * padding; real sshd takes 256 KiB packets, so real Dokku's limit is the kernel's (130000).
 */
export const SANDBOX_MAX_COMMAND_BYTES = 34_000;

export interface Sandbox {
  readonly port: number;
  /** SANDBOX_MAX_COMMAND_BYTES: register the host with it (`dokku_hosts.max_command_bytes`). */
  readonly maxCommandBytes: number;
  /** `ssh://dokku@127.0.0.1:PORT` */
  readonly sshUrl: string;
  /** OpenSSH public key line of the host key. */
  readonly hostKey: string;
  readonly version: string;
  /** `http://127.0.0.1:PORT`: routes by `Host` header like the host's nginx. */
  readonly ingressUrl: string;
  /** The app's own listener, when it is running and serves HTTP. */
  endpoint(app: string): string | undefined;
  readonly control: SandboxControl;
  /** The directory holding state.json, host_key and storage/. */
  readonly stateDir: string;
  close(): Promise<void>;
}

function loadHostKey(dir: string, given: string | undefined): string {
  if (given !== undefined) return given;
  const file = join(dir, "host_key");
  if (existsSync(file)) return readFileSync(file, "utf8");
  const pair = generateEd25519KeyPair();
  writeFileSync(file, pair.private, { mode: 0o600 });
  return pair.private;
}

function publicLine(pem: string): string {
  const parsed = ssh2.utils.parseKey(pem);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || key instanceof Error) throw new Error("sandbox: invalid host key", { cause: key });
  return `${key.type} ${key.getPublicSSH().toString("base64")}`;
}

function parseAuthorized(lines: string[] | null | undefined): ReturnType<typeof ssh2.utils.parseKey>[] | undefined {
  if (lines === null || lines === undefined) return undefined;
  return lines
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const k = ssh2.utils.parseKey(l);
      if (k instanceof Error) throw new Error(`sandbox: invalid authorized key: ${k.message}`);
      return k;
    });
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const version = normalizeVersion(options.dokkuVersion);
  const bind = options.host ?? "127.0.0.1";
  const temp = options.stateDir === undefined;
  const dir = options.stateDir ?? mkdtempSync(join(tmpdir(), "dokku-sandbox-"));
  ensureDir(join(dir, "storage"));
  const hostKeyPem = loadHostKey(dir, options.hostKeyPem);
  const store = new Store(temp ? undefined : join(dir, "state.json"));
  store.load();
  const runtime = new HttpRuntime(store, bind, options.serveHttp ?? true);
  const host: Host = {
    store,
    root: dir,
    globalVhost: options.globalVhost === undefined ? "sandbox.localhost" : options.globalVhost,
    letsencryptEmail: options.letsencryptEmail === undefined ? "ops@sandbox.localhost" : options.letsencryptEmail,
    locks: new DeployLocks(),
    runtime,
    images: new Set(),
    now: () => Date.now(),
  };
  const faults = new Faults(options.seed === undefined ? Math.random : seededRandom(options.seed));
  const log: CommandRecord[] = [];
  const ssh = new SshFrontend({
    host,
    version,
    hostKeyPem,
    authorized: parseAuthorized(options.authorizedKeys),
    faults,
    record: (r) => void log.push(r),
  });
  await runtime.start();
  const port = await ssh.listen(options.port ?? 0, bind);
  const control = createControl(host, faults, log);
  return {
    port,
    maxCommandBytes: SANDBOX_MAX_COMMAND_BYTES,
    sshUrl: `ssh://dokku@${bind}:${port}`,
    hostKey: publicLine(hostKeyPem),
    version,
    ingressUrl: `http://${bind}:${runtime.ingressPort}`,
    endpoint: (app) => runtime.endpoint(app),
    control,
    stateDir: dir,
    async close() {
      faults.setUnresponsive(false);
      await ssh.close();
      await runtime.close();
      if (temp) rmSync(dir, { recursive: true, force: true });
    },
  };
}
