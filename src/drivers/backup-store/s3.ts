/**
 * The S3 store (BACKUP_STORE=s3): any S3-compatible service (AWS S3, Cloudflare R2, MinIO, Backblaze
 * B2, Supabase Storage's S3 endpoint) through @aws-sdk/client-s3 and the multipart `Upload` of
 * @aws-sdk/lib-storage, which holds at most QUEUE_SIZE parts of PART_SIZE in memory.
 *
 * Checksums are computed and validated only when an operation requires them: the SDK's default
 * (since 3.729) streams uploads as `aws-chunked` with a trailing CRC32, which many S3-compatible
 * servers reject. Integrity is ours anyway: sha256 recorded at `put`, verified on every read, and
 * AES-GCM authentication underneath.
 *
 * A failed or aborted `put` aborts its multipart upload before it rejects, so no object appears at
 * the key and no upload stays open; `cleanupStale` aborts uploads a killed process left under the prefix.
 */
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";

import { measureStream } from "./digest.ts";
import { bounded, checkKey, splitBucket, stripScheme, withDeadline } from "./keys.ts";
import type { BackupStore, StoredObject } from "./types.ts";

export interface S3StoreOptions {
  readonly bucket: string;
  /** Unset: AWS S3 for `region`. */
  readonly endpoint: string | undefined;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly forcePathStyle: boolean;
  /** Prepended to every key (`mindroom/`); `cleanupStale` only touches uploads under it. */
  readonly prefix: string;
  /** Per request without progress on its socket, and per metadata call; default 2 minutes. */
  readonly requestTimeoutMs?: number;
}

const SCHEME = "s3://";
/** 8 MiB parts (S3's minimum is 5 MiB) with 4 in flight: about 32 MiB of memory per upload. */
const PART_SIZE = 8 * 1024 * 1024;
const QUEUE_SIZE = 4;
const DEFAULT_TIMEOUT_MS = 120_000;

export function createS3Store(options: S3StoreOptions): BackupStore {
  const timeoutMs = options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle,
    credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 3,
    // requestTimeout is the socket idle timeout: a long upload is fine, a stalled one is cut off.
    requestHandler: { connectionTimeout: Math.min(timeoutMs, 30_000), requestTimeout: timeoutMs },
  });
  const parse = (location: string): { bucket: string; key: string } => splitBucket(stripScheme(location, SCHEME, "s3"), location);
  return {
    kind: "s3",
    put: async (key, body, signal) => putObject(client, options, options.prefix + checkKey(key), body, signal),
    async get(location, signal) {
      const { bucket, key } = parse(location);
      const request = (abortSignal: AbortSignal) => client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal });
      const output = await withDeadline(timeoutMs, signal, request).catch((error: unknown) => {
        throw isNotFound(error) ? new Error(`backup object ${location} does not exist`, { cause: error }) : wrap("s3 get failed", error);
      });
      if (!(output.Body instanceof Readable)) throw new Error(`s3 get of ${location} returned no body stream`);
      return output.Body;
    },
    async delete(location, signal) {
      const { bucket, key } = parse(location);
      // S3 answers 204 for a missing key too: delete is idempotent by protocol.
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: bounded(timeoutMs, signal) }).catch((error: unknown) => {
        if (!isNotFound(error)) throw wrap("s3 delete failed", error);
      });
    },
    cleanupStale: (olderThanMs, signal) => abortStaleUploads(client, options, Date.now() - olderThanMs, timeoutMs, signal),
  };
}

async function putObject(client: S3Client, options: S3StoreOptions, key: string, body: Readable, signal?: AbortSignal): Promise<StoredObject> {
  signal?.throwIfAborted();
  const measure = measureStream();
  // Aborting destroys the source instead of aborting the Upload: Upload.abort() rejects done() at
  // once, before its own AbortMultipartUpload has run; a failed source makes done() wait for it.
  // Settles to the source's error (or undefined), handled from the start so it never goes unhandled.
  const feeding: Promise<unknown> = pipeline(body, measure.stream, signal ? { signal } : {}).then(
    () => undefined,
    (error: unknown) => error ?? new Error("backup source failed"),
  );
  const upload = new Upload({ client, params: { Bucket: options.bucket, Key: key, Body: measure.stream }, partSize: PART_SIZE, queueSize: QUEUE_SIZE, leavePartsOnError: false });
  try {
    await upload.done();
  } catch (error) {
    measure.stream.destroy(); // unblocks the source when the upload failed first
    const cause = (await feeding) ?? error;
    await abortUpload(client, options.bucket, key, upload.uploadId);
    throw wrap("s3 upload failed", cause);
  }
  const failed = await feeding;
  if (failed !== undefined) {
    // Cannot happen with a well-behaved source (the upload reads to its end), but never keep an object whose source failed.
    await client.send(new DeleteObjectCommand({ Bucket: options.bucket, Key: key }), { abortSignal: AbortSignal.timeout(30_000) });
    throw wrap("s3 upload failed", failed);
  }
  return { location: `${SCHEME}${options.bucket}/${key}`, ...measure.result() };
}

/** Belt and braces after a failure: Upload aborts on its own, but not if it lost the race with a signal. */
async function abortUpload(client: S3Client, bucket: string, key: string, uploadId: string | undefined): Promise<void> {
  if (!uploadId) return;
  await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), { abortSignal: AbortSignal.timeout(30_000) }).catch((error: unknown) => {
    if (!isNotFound(error)) throw wrap(`s3 upload failed and aborting multipart upload ${uploadId} failed too (cleanupStale will retry)`, error);
  });
}

async function abortStaleUploads(client: S3Client, options: S3StoreOptions, cutoffMs: number, timeoutMs: number, signal?: AbortSignal): Promise<number> {
  let aborted = 0;
  let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
  for (;;) {
    const page: ListMultipartUploadsCommandOutput = await client.send(new ListMultipartUploadsCommand({ Bucket: options.bucket, Prefix: options.prefix, ...markers }), {
      abortSignal: bounded(timeoutMs, signal),
    });
    for (const upload of page.Uploads ?? []) {
      if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated.getTime() >= cutoffMs) continue;
      await client.send(new AbortMultipartUploadCommand({ Bucket: options.bucket, Key: upload.Key, UploadId: upload.UploadId }), { abortSignal: bounded(timeoutMs, signal) });
      aborted += 1;
    }
    if (!page.IsTruncated) return aborted;
    markers = { ...(page.NextKeyMarker ? { KeyMarker: page.NextKeyMarker } : {}), ...(page.NextUploadIdMarker ? { UploadIdMarker: page.NextUploadIdMarker } : {}) };
  }
}

function isNotFound(error: unknown): boolean {
  const name = (error as { name?: unknown }).name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return name === "NoSuchKey" || name === "NotFound" || name === "NoSuchUpload" || status === 404;
}

/** The SDK's errors carry the request (not credentials) in `$metadata`; keep them as the cause. */
function wrap(message: string, error: unknown): Error {
  const detail = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return new Error(`${message}: ${detail}`, { cause: error });
}
