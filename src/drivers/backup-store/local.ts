/**
 * The local store (BACKUP_STORE=local, the zero-config default): files under DATA_DIR/backups.
 * `put` writes `<key>.<random>.partial` (0600, directories 0700), fsyncs it, then links it into
 * place without replacing anything and removes the partial name, so a crash at any point leaves
 * either nothing at `key` or the complete object; `cleanupStale` removes partials a killed process left.
 */
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { link, mkdir, open, readdir, stat, unlink } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import { measureStream } from "./digest.ts";
import { checkKey, stripScheme } from "./keys.ts";
import type { BackupStore, StoredObject } from "./types.ts";

const SCHEME = "local:";
const PARTIAL_SUFFIX = ".partial";

export function createLocalStore(dataDir: string): BackupStore {
  const root = join(dataDir, "backups");
  const pathOf = (location: string): string => join(root, checkKey(stripScheme(location, SCHEME, "local")));
  return {
    kind: "local",
    put: async (key, body, signal) => putFile(root, checkKey(key), body, signal),
    async get(location, signal) {
      signal?.throwIfAborted();
      const handle = await open(pathOf(location), "r").catch((error: NodeJS.ErrnoException) => {
        throw error.code === "ENOENT" ? new Error(`backup object ${location} does not exist`, { cause: error }) : error;
      });
      const stream = handle.createReadStream();
      signal?.addEventListener("abort", () => stream.destroy(signal.reason as Error), { once: true });
      return stream;
    },
    async delete(location) {
      await unlinkIfPresent(pathOf(location));
    },
    cleanupStale: (olderThanMs, signal) => removeStalePartials(root, Date.now() - olderThanMs, signal),
  };
}

async function putFile(root: string, key: string, body: Readable, signal?: AbortSignal): Promise<StoredObject> {
  const target = join(root, key);
  const partial = `${target}.${randomBytes(6).toString("hex")}${PARTIAL_SUFFIX}`;
  await mkdir(dirname(target), { recursive: true, mode: 0o700 });
  const measure = measureStream();
  try {
    await pipeline(body, measure.stream, createWriteStream(partial, { flags: "wx", mode: 0o600 }), signal ? { signal } : {});
    await syncPath(partial);
    // link() refuses to replace an existing file, where rename() would silently overwrite a backup.
    await link(partial, target).catch((error: NodeJS.ErrnoException) => {
      throw error.code === "EEXIST" ? new Error(`backup object local:${key} already exists`, { cause: error }) : error;
    });
    await unlink(partial);
    await syncPath(dirname(target));
  } catch (error) {
    await unlinkIfPresent(partial);
    throw error;
  }
  return { location: `${SCHEME}${key}`, ...measure.result() };
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function unlinkIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  });
}

async function removeStalePartials(root: string, cutoffMs: number, signal?: AbortSignal): Promise<number> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return [];
    throw error;
  });
  let removed = 0;
  for (const entry of entries) {
    signal?.throwIfAborted();
    if (!entry.isFile() || !entry.name.endsWith(PARTIAL_SUFFIX)) continue;
    const path = join(entry.parentPath, entry.name);
    if (relative(root, path).startsWith(`..${sep}`)) continue;
    const info = await stat(path).catch(() => undefined);
    if (info && info.mtimeMs < cutoffMs) {
      await unlinkIfPresent(path);
      removed += 1;
    }
  }
  return removed;
}
