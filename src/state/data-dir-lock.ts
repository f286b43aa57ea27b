/**
 * Ownership of a data directory: at most one `serve` process runs on a DATA_DIR (its embedded
 * Postgres, its sandbox Dokku host, its generated keys), and any process can ask whether a live
 * owner exists.
 *
 * The lock is a listening Unix domain socket that only the kernel can hold for a process: it is
 * released when the owner exits or is killed (SIGKILL included), with no stale file to clean up
 * and no guessing from a pid that may have been reused. On Linux the socket lives in the abstract
 * namespace (a name starting with NUL, never a file), named after the directory's device and inode,
 * so every path that leads to the same directory (symlinks, relative paths) names the same lock;
 * binding it is atomic, so of two simultaneous starts exactly one wins. Elsewhere (macOS, for
 * development) it is a socket file in the directory: a file left by a dead owner refuses
 * connections and is replaced.
 *
 * Node opens every descriptor close-on-exec, so child processes (the embedded Postgres) never
 * inherit the lock and cannot keep it after the owner died.
 *
 * Contract: `acquireDataDirLock` either returns the held lock or throws DataDirBusyError naming
 * the owner's pid; it changes nothing in the directory but the lock itself. `dataDirOwner` never
 * takes the lock. Abstract sockets are scoped to a network namespace: two containers sharing one
 * volume do not see each other's lock (run one `serve` per DATA_DIR, as documented).
 */
import { stat, unlink } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import { join, resolve } from "node:path";

export interface DataDirLock {
  readonly dataDir: string;
  /** Releases the lock (the owner's shutdown). Idempotent. */
  release(): Promise<void>;
}

export interface DataDirOwner {
  readonly pid: number;
}

export class DataDirBusyError extends Error {
  override readonly name = "DataDirBusyError";
  constructor(
    readonly dataDir: string,
    readonly ownerPid: number | undefined,
  ) {
    super(`another serve${ownerPid ? ` (pid ${ownerPid})` : ""} already owns DATA_DIR ${dataDir}; stop it first, or give this one its own DATA_DIR`);
  }
}

export interface LockOptions {
  /** Test seam: force the socket-file variant (the default off Linux). */
  readonly abstract?: boolean;
}

const PROBE_TIMEOUT_MS = 2_000;
const SOCKET_FILE = "serve.lock.sock";

/** Takes ownership of `dataDir` (which must exist) or throws DataDirBusyError. */
export async function acquireDataDirLock(dataDir: string, options: LockOptions = {}): Promise<DataDirLock> {
  const root = resolve(dataDir);
  const address = await lockAddress(root, options);
  const server = createServer((socket) => socket.end(`${JSON.stringify({ pid: process.pid })}\n`));
  try {
    await listenOn(server, address.path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw new Error(`cannot lock DATA_DIR ${root}`, { cause: error });
    const owner = await probe(address.path);
    if (owner !== "refused" || address.abstract) throw new DataDirBusyError(root, owner === "refused" ? undefined : owner?.pid);
    // A socket file left by an owner that died: nothing listens on it any more.
    await unlink(address.path).catch(() => {});
    await listenOn(server, address.path).catch((retry: unknown) => {
      throw (retry as NodeJS.ErrnoException).code === "EADDRINUSE" ? new DataDirBusyError(root, undefined) : retry;
    });
  }
  // The lock must never keep the process alive by itself.
  server.unref();
  let released: Promise<void> | undefined;
  return {
    dataDir: root,
    release: () => (released ??= new Promise<void>((done) => server.close(() => done()))),
  };
}

/** The live owner of `dataDir`, or undefined when no process holds its lock. Never takes it. */
export async function dataDirOwner(dataDir: string, options: LockOptions = {}): Promise<DataDirOwner | undefined> {
  const root = resolve(dataDir);
  let address;
  try {
    address = await lockAddress(root, options);
  } catch {
    return undefined;
  }
  const owner = await probe(address.path);
  return owner === "refused" ? undefined : (owner ?? { pid: 0 });
}

async function lockAddress(root: string, options: LockOptions): Promise<{ path: string; abstract: boolean }> {
  const abstract = options.abstract ?? process.platform === "linux";
  if (!abstract) return { path: join(root, SOCKET_FILE), abstract };
  const info = await stat(root);
  return { path: `\0mindroom-reconciler/data-dir/${info.dev}/${info.ino}`, abstract };
}

function listenOn(server: Server, path: string): Promise<void> {
  return new Promise((done, fail) => {
    const onError = (error: Error): void => fail(error);
    server.once("error", onError);
    server.listen({ path, exclusive: true }, () => {
      server.off("error", onError);
      done();
    });
  });
}

/**
 * Connects to the lock: "refused" when nobody listens (no owner), the owner's answer when one
 * does, undefined when a listener exists but did not answer in time (still an owner).
 */
function probe(path: string): Promise<DataDirOwner | "refused" | undefined> {
  return new Promise((done) => {
    const socket = createConnection({ path });
    let text = "";
    const finish = (value: DataDirOwner | "refused" | undefined): void => {
      socket.destroy();
      done(value);
    };
    socket.setTimeout(PROBE_TIMEOUT_MS, () => finish(undefined));
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("utf8")));
    socket.on("end", () => finish(parseOwner(text)));
    socket.on("error", (error: NodeJS.ErrnoException) => finish(error.code === "ECONNREFUSED" || error.code === "ENOENT" ? "refused" : undefined));
  });
}

function parseOwner(text: string): DataDirOwner | undefined {
  try {
    const pid = (JSON.parse(text) as { pid?: unknown }).pid;
    return typeof pid === "number" && Number.isInteger(pid) ? { pid } : undefined;
  } catch {
    return undefined;
  }
}
