/**
 * A stateful fake of the Supabase Storage HTTP API (`/storage/v1`), served on 127.0.0.1 so the real
 * @supabase/storage-js client talks to it. It follows the documented behaviour of storage-api for
 * what the backup store uses:
 *
 * - auth: every request needs `apikey` and `Authorization: Bearer` with the service role key;
 * - buckets: `GET /bucket/:id`, `POST /bucket` ({id, name, public, file_size_limit}), private by default;
 * - objects: `POST /object/:bucket/:path` (raw body, `x-upsert`; an existing path without upsert is
 *   409 Duplicate), `GET /object[/authenticated]/:bucket/:path`, `DELETE /object/:bucket`
 *   ({prefixes}, answers the removed objects, missing paths are skipped), `POST /object/list/:bucket`
 *   ({prefix, limit, offset}: files and folders one level below the prefix);
 * - errors in storage-api's legacy shape: HTTP 400 with `{statusCode: "404" | "409" | "413" | "403",
 *   error, message}` in the body;
 * - uploads are atomic: the body is written to a temporary file and the object appears only once the
 *   whole body arrived; a body over the file size limit, or one the client aborts, leaves nothing.
 *
 * Object bytes live on disk under `dir`, so benchmarks can move hundreds of megabytes through it.
 */
import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

export const FAKE_SERVICE_ROLE_KEY = "fake-service-role-key";

interface Bucket {
  readonly id: string;
  readonly name: string;
  readonly public: boolean;
  readonly file_size_limit: number | null;
  readonly created_at: string;
}

interface StoredFile {
  readonly id: string;
  readonly file: string;
  readonly size: number;
  readonly mimetype: string;
  readonly created_at: string;
}

export interface FakeSupabaseStorage {
  readonly url: string;
  readonly buckets: Map<string, Bucket>;
  /** Objects by bucket, then by path. */
  readonly objects: Map<string, Map<string, StoredFile>>;
  /** `METHOD /path` of every request, in order. */
  readonly requests: string[];
  /** Uploads whose body is still arriving. */
  uploadsInFlight(): number;
  close(): Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly statusCode: string,
    readonly error: string,
    message: string,
  ) {
    super(message);
  }
}

const notFound = (what: "Bucket" | "Object"): ApiError => new ApiError("404", what === "Bucket" ? "Bucket not found" : "not_found", `${what} not found`);

/** `globalFileSizeLimit` is the project's limit (50 MB on the Free plan); default 5 GB. */
export async function startFakeSupabaseStorage(dir: string, options: { globalFileSizeLimit?: number } = {}): Promise<FakeSupabaseStorage> {
  await mkdir(join(dir, "tmp"), { recursive: true });
  const state = { buckets: new Map<string, Bucket>(), objects: new Map<string, Map<string, StoredFile>>(), requests: [] as string[], inFlight: 0 };
  const limit = options.globalFileSizeLimit ?? 5 * 1024 ** 3;
  const server: Server = createServer((req, res) => {
    state.requests.push(`${req.method} ${(req.url ?? "").split("?")[0]}`);
    handle(req, res, state, dir, limit).catch((error: unknown) => {
      if (res.headersSent || res.destroyed) return;
      const api = error instanceof ApiError ? error : new ApiError("500", "internal", String(error));
      send(res, 400, { statusCode: api.statusCode, error: api.error, message: api.message });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    buckets: state.buckets,
    objects: state.objects,
    requests: state.requests,
    uploadsInFlight: () => state.inFlight,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

type State = { buckets: Map<string, Bucket>; objects: Map<string, Map<string, StoredFile>>; inFlight: number };

async function handle(req: IncomingMessage, res: ServerResponse, state: State, dir: string, limit: number): Promise<void> {
  const key = req.headers.apikey;
  if (!key || req.headers.authorization !== `Bearer ${key}` || key !== FAKE_SERVICE_ROLE_KEY) {
    req.resume();
    throw new ApiError("403", "Unauthorized", "invalid signature");
  }
  const path = decodeURIComponent((req.url ?? "").split("?")[0] ?? "").replace(/^\/storage\/v1/, "");
  const [, area, ...rest] = path.split("/");
  if (area === "bucket") return handleBucket(req, res, state, rest);
  if (area === "object" && req.method === "POST" && rest[0] === "list") return list(res, state, rest[1] ?? "", await json(req));
  if (area === "object" && req.method === "DELETE" && rest.length === 1) return remove(res, state, rest[0] ?? "", await json(req));
  if (area === "object") {
    const parts = req.method === "GET" && rest[0] === "authenticated" ? rest.slice(1) : rest;
    const [bucket = "", ...name] = parts;
    if (req.method === "POST" || req.method === "PUT") return upload(req, res, state, dir, limit, bucket, name.join("/"));
    if (req.method === "GET") return download(res, state, bucket, name.join("/"));
  }
  req.resume();
  throw new ApiError("404", "not_found", `no route ${req.method} ${path}`);
}

async function handleBucket(req: IncomingMessage, res: ServerResponse, state: State, rest: string[]): Promise<void> {
  if (req.method === "GET" && rest.length === 1) {
    const bucket = state.buckets.get(rest[0] ?? "");
    if (!bucket) throw notFound("Bucket");
    return send(res, 200, { ...bucket, owner: "", updated_at: bucket.created_at, allowed_mime_types: null });
  }
  if (req.method === "POST" && rest.length === 0) {
    const body = (await json(req)) as { id?: string; name?: string; public?: boolean; file_size_limit?: number | null };
    const id = body.id ?? body.name;
    if (!id) throw new ApiError("400", "Invalid Input", "body must have required property 'name'");
    if (state.buckets.has(id)) throw new ApiError("409", "Duplicate", "The resource already exists");
    state.buckets.set(id, { id, name: body.name ?? id, public: body.public ?? false, file_size_limit: body.file_size_limit ?? null, created_at: new Date().toISOString() });
    state.objects.set(id, new Map());
    return send(res, 200, { name: id });
  }
  req.resume();
  throw new ApiError("404", "not_found", "no such bucket route");
}

async function upload(req: IncomingMessage, res: ServerResponse, state: State, dir: string, globalLimit: number, bucketId: string, name: string): Promise<void> {
  const bucket = state.buckets.get(bucketId);
  const objects = state.objects.get(bucketId);
  if (!bucket || !objects) {
    req.resume();
    throw notFound("Bucket");
  }
  const upsert = req.method === "PUT" || req.headers["x-upsert"] === "true";
  if (objects.has(name) && !upsert) {
    req.resume();
    throw new ApiError("409", "Duplicate", "The resource already exists");
  }
  const limit = Math.min(globalLimit, bucket.file_size_limit ?? Infinity);
  const temp = join(dir, "tmp", randomUUID());
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      callback(size > limit ? new ApiError("413", "Payload too large", "The object exceeded the maximum allowed size") : null, chunk);
    },
  });
  state.inFlight += 1;
  try {
    await pipeline(req, counter, createWriteStream(temp));
    if (!req.complete) throw new ApiError("400", "aborted", "request body aborted");
    const file = join(dir, randomUUID());
    await rename(temp, file);
    if (objects.has(name) && !upsert) throw new ApiError("409", "Duplicate", "The resource already exists");
    objects.set(name, { id: randomUUID(), file, size, mimetype: String(req.headers["content-type"] ?? "application/octet-stream"), created_at: new Date().toISOString() });
    send(res, 200, { Id: objects.get(name)!.id, Key: `${bucketId}/${name}` });
  } catch (error) {
    await rm(temp, { force: true });
    // The body was cut off mid-way: answer, then close the connection (as Node's HTTP server does).
    res.setHeader("connection", "close");
    req.resume();
    throw error;
  } finally {
    state.inFlight -= 1;
  }
}

async function download(res: ServerResponse, state: State, bucketId: string, name: string): Promise<void> {
  if (!state.buckets.has(bucketId)) throw notFound("Bucket");
  const object = state.objects.get(bucketId)?.get(name);
  if (!object) throw notFound("Object");
  const { size } = await stat(object.file);
  res.writeHead(200, { "content-type": object.mimetype, "content-length": size });
  await pipeline(createReadStream(object.file), res);
}

async function remove(res: ServerResponse, state: State, bucketId: string, body: unknown): Promise<void> {
  const objects = state.objects.get(bucketId);
  if (!objects) throw notFound("Bucket");
  const prefixes = (body as { prefixes?: unknown }).prefixes;
  if (!Array.isArray(prefixes)) throw new ApiError("400", "Invalid Input", "body must have required property 'prefixes'");
  const removed = [];
  for (const name of prefixes.map(String)) {
    const object = objects.get(name);
    if (!object) continue;
    objects.delete(name);
    await rm(object.file, { force: true });
    removed.push({ bucket_id: bucketId, name, id: object.id, metadata: { size: object.size, mimetype: object.mimetype } });
  }
  send(res, 200, removed);
}

function list(res: ServerResponse, state: State, bucketId: string, body: unknown): void {
  const objects = state.objects.get(bucketId);
  if (!objects) throw notFound("Bucket");
  const { prefix = "", limit = 100, offset = 0 } = body as { prefix?: string; limit?: number; offset?: number };
  const folder = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
  const entries = new Map<string, unknown>();
  for (const [name, object] of [...objects.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    if (!name.startsWith(folder)) continue;
    const [first, ...deeper] = name.slice(folder.length).split("/");
    if (!first) continue;
    if (deeper.length > 0) entries.set(first, { name: first, id: null, updated_at: null, created_at: null, last_accessed_at: null, metadata: null });
    else entries.set(first, { name: first, id: object.id, updated_at: object.created_at, created_at: object.created_at, last_accessed_at: object.created_at, metadata: { size: object.size, mimetype: object.mimetype } });
  }
  send(res, 200, [...entries.values()].slice(offset, offset + limit));
}

async function json(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
  } catch {
    throw new ApiError("400", "Invalid Input", "body is not JSON");
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}
