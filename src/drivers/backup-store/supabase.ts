/**
 * The Supabase Storage store (BACKUP_STORE=supabase) through @supabase/supabase-js. Objects live in a
 * private bucket (SUPABASE_BACKUP_BUCKET, created private on first use when missing; an existing
 * public bucket is refused).
 *
 * The client is supabase-js's own Storage client (@supabase/storage-js, the version supabase-js
 * pins): supabase-js's createClient also builds a Realtime client, which refuses to start on
 * Node 20 without a WebSocket implementation, for a store that never uses Realtime.
 *
 * Uploads use the standard upload endpoint with the archive streamed as the request body (never
 * buffered). supabase-js has no resumable (TUS) client, and TUS needs chunks buffered per request,
 * so archives are limited to Supabase's standard-upload maximum of 5 GB (and to the project's
 * global file size limit, 50 MB on the Free plan): the store refuses an archive as soon as it grows
 * past MAX_OBJECT_BYTES, and maps the server's "too large" answer to the same clear error. Larger
 * archives: use BACKUP_STORE=s3 with Supabase's S3 endpoint (multipart, no size limit that matters).
 *
 * A standard upload is atomic on the server (the object exists only once the whole body arrived),
 * so an aborted upload leaves nothing behind and `cleanupStale` has nothing to clean.
 */
import { Readable, Transform, type TransformCallback } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";

import { StorageClient } from "@supabase/storage-js";

import { measureStream } from "./digest.ts";
import { checkKey, splitBucket, stripScheme, withDeadline } from "./keys.ts";
import type { BackupStore, StoredObject } from "./types.ts";

export interface SupabaseStoreOptions {
  readonly url: string;
  readonly serviceRoleKey: string;
  readonly bucket: string;
  /** Metadata calls, and an upload or download that moves no byte for this long; default 2 minutes. */
  readonly requestTimeoutMs?: number;
  /** Refuse archives larger than this; default 5 GiB (the standard upload maximum). */
  readonly maxObjectBytes?: number;
}

const SCHEME = "supabase://";
export const SUPABASE_STANDARD_UPLOAD_LIMIT = 5 * 1024 ** 3;
const DEFAULT_TIMEOUT_MS = 120_000;

interface StorageErrorLike {
  readonly message: string;
  readonly status?: number | undefined;
  readonly statusCode?: string | undefined;
}

type Storage = StorageClient;

export function createSupabaseStore(options: SupabaseStoreOptions): BackupStore {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  // Every request must answer within timeoutMs; a download body then streams on, bounded by the
  // caller's signal and undici's body timeout. Uploads, whose answer comes only after the whole
  // body, are bounded by the idle watchdog in `guard` instead.
  const boundedFetch: typeof fetch = (input, init) =>
    init?.body instanceof Readable ? fetch(input, init) : withDeadline(timeoutMs, init?.signal ?? undefined, (signal) => fetch(input, { ...init, signal }));
  // The same headers supabase-js sends: the key as apikey and as the bearer token.
  const headers = { apikey: options.serviceRoleKey, Authorization: `Bearer ${options.serviceRoleKey}` };
  const storage = new StorageClient(new URL("storage/v1", options.url.endsWith("/") ? options.url : `${options.url}/`).toString(), headers, boundedFetch);
  let bucketReady: Promise<void> | undefined;
  const ensureBucket = (): Promise<void> => {
    bucketReady ??= ensurePrivateBucket(storage, options.bucket).catch((error: unknown) => {
      bucketReady = undefined;
      throw error;
    });
    return bucketReady;
  };
  const parse = (location: string): { bucket: string; key: string } => splitBucket(stripScheme(location, SCHEME, "supabase"), location);
  return {
    kind: "supabase",
    async put(key, body, signal) {
      await ensureBucket();
      return putObject(storage, options, checkKey(key), body, timeoutMs, signal);
    },
    async get(location, signal) {
      const { bucket, key } = parse(location);
      const { data, error } = await storage.from(bucket).download(key, {}, signal ? { signal } : {}).asStream();
      if (error) throw isNotFound(error) ? new Error(`backup object ${location} does not exist`, { cause: error }) : storageError("supabase download failed", error);
      return Readable.fromWeb(data as WebReadableStream<Uint8Array>);
    },
    async delete(location, signal) {
      signal?.throwIfAborted();
      const { bucket, key } = parse(location);
      // Removing a missing path succeeds with an empty list: idempotent by protocol.
      const { error } = await storage.from(bucket).remove([key]);
      if (error) throw storageError("supabase delete failed", error);
    },
    async cleanupStale() {
      return 0;
    },
  };
}

async function ensurePrivateBucket(storage: Storage, bucket: string): Promise<void> {
  const found = await storage.getBucket(bucket);
  if (found.data) {
    if (found.data.public) throw new Error(`supabase bucket ${bucket} is public; backups need a private bucket (make it private or set SUPABASE_BACKUP_BUCKET)`);
    return;
  }
  if (!isNotFound(found.error)) throw storageError(`supabase bucket ${bucket} could not be read`, found.error);
  const created = await storage.createBucket(bucket, { public: false });
  // Another replica may have created it meanwhile.
  if (created.error && created.error.statusCode !== "409") throw storageError(`supabase bucket ${bucket} could not be created`, created.error);
}

async function putObject(storage: Storage, options: SupabaseStoreOptions, key: string, body: Readable, timeoutMs: number, signal?: AbortSignal): Promise<StoredObject> {
  signal?.throwIfAborted();
  const limit = options.maxObjectBytes ?? SUPABASE_STANDARD_UPLOAD_LIMIT;
  const measure = measureStream();
  const guarded = body.pipe(measure.stream).pipe(guard(limit, timeoutMs));
  const fail = (error: Error): void => {
    guarded.destroy(error);
  };
  body.once("error", fail);
  measure.stream.once("error", fail);
  const onAbort = (): void => fail(new Error("supabase upload aborted", { cause: signal?.reason }));
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const { error } = await storage.from(options.bucket).upload(key, guarded, { contentType: "application/octet-stream", upsert: false, duplex: "half" });
    if (error) throw uploadError(key, error, guarded.errored, limit);
  } catch (error) {
    body.destroy(); // as a failed pipeline does in the other stores: the producer (tar) stops too
    throw error;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    body.unpipe(measure.stream);
    if (!guarded.destroyed) guarded.destroy();
  }
  return { location: `${SCHEME}${options.bucket}/${key}`, ...measure.result() };
}

/** Errors once more than `limit` bytes pass, or when no byte passes for `idleMs` (a stalled upload). */
function guard(limit: number, idleMs: number): Transform {
  let seen = 0;
  const stream: Transform = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      seen += chunk.length;
      timer.refresh();
      if (seen > limit) callback(new Error(tooLarge(limit)));
      else callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      clearTimeout(timer);
      callback();
    },
  });
  const timer = setTimeout(() => stream.destroy(new Error(`supabase upload stalled: no bytes for ${idleMs} ms`)), idleMs);
  stream.once("close", () => clearTimeout(timer));
  return stream;
}

function tooLarge(limit: number): string {
  return `backup archive is larger than ${limit} bytes, the most a Supabase Storage standard upload takes (or the project's file size limit); use BACKUP_STORE=s3 with Supabase's S3 endpoint for larger archives`;
}

function uploadError(key: string, error: StorageErrorLike, local: Error | null, limit: number): Error {
  if (local) return new Error(`supabase upload of ${key} failed: ${local.message}`, { cause: error });
  if (error.statusCode === "413" || error.status === 413) return new Error(tooLarge(limit), { cause: error });
  if (error.statusCode === "409") return new Error(`backup object supabase://.../${key} already exists`, { cause: error });
  return storageError(`supabase upload of ${key} failed`, error);
}

function isNotFound(error: StorageErrorLike | null): boolean {
  return error !== null && (error.status === 404 || error.statusCode === "404");
}

function storageError(message: string, error: StorageErrorLike | null): Error {
  return new Error(`${message}: ${error?.message ?? "unknown error"}${error?.statusCode ? ` (${error.statusCode})` : ""}`, { cause: error });
}
