/**
 * A real S3-protocol server on loopback for tests and benchmarks: s3rver (buckets, objects,
 * multipart uploads on a file system store; it checks the access key id but not V4 signatures), plus the two
 * operations s3rver 3.7 lacks and the S3 store needs: ListMultipartUploads (`GET /bucket?uploads`)
 * and AbortMultipartUpload (`DELETE /bucket/key?uploadId=`). Those two follow the S3 API reference
 * (XML shapes, key-marker/upload-id-marker pagination, 404 NoSuchUpload) and act on s3rver's own
 * upload directories, so an upload the server holds is exactly one these list and abort.
 */
import { readdir, readFile, rm, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

import S3rver from "s3rver";

export const S3_ACCESS_KEY_ID = "S3RVER";
export const S3_SECRET_ACCESS_KEY = "S3RVER";

export interface S3TestServer {
  readonly endpoint: string;
  readonly bucket: string;
  /** Every request as received: method, path with query, and headers (for the checksum-mode tests). */
  readonly requests: Array<{ method: string; url: string; headers: Record<string, string | string[] | undefined> }>;
  /** Open multipart uploads in the bucket, read from the server's own store. */
  openUploads(): Promise<Array<{ key: string; uploadId: string; initiated: Date }>>;
  close(): Promise<void>;
}

export async function startS3Server(directory: string, bucket = "backups"): Promise<S3TestServer> {
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory, configureBuckets: [{ name: bucket, configs: [] }] });
  const uploadsDir = (name: string): string => join(directory, name, "._S3rver_uploads");
  const openUploads = (name: string) => listUploadDirs(uploadsDir(name));
  // Before s3rver's router (the last middleware), so the two operations it lacks reach ours.
  const koa = server as unknown as { middleware: Array<(ctx: Context, next: Next) => Promise<unknown>> };
  koa.middleware.splice(koa.middleware.length - 1, 0, (ctx, next) => multipartExtensions(ctx, next, openUploads, uploadsDir));
  const requests: S3TestServer["requests"] = [];
  koa.middleware.unshift((ctx, next) => {
    requests.push({ method: ctx.method, url: ctx.url, headers: { ...ctx.headers } });
    return next();
  });
  const address = (await server.run()) as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    bucket,
    requests,
    openUploads: () => openUploads(bucket),
    close: () => server.close(),
  };
}

type Upload = { key: string; uploadId: string; initiated: Date };

/** The part of Koa's context these handlers use (s3rver is a Koa 2 application). */
interface Context {
  readonly path: string;
  readonly url: string;
  readonly method: string;
  readonly query: Record<string, string | string[] | undefined>;
  readonly headers: Record<string, string | string[] | undefined>;
  status: number;
  type: string;
  body: unknown;
  throw(status: number, message: string): never;
}
type Next = () => Promise<unknown>;

async function listUploadDirs(dir: string): Promise<Upload[]> {
  const ids = await readdir(dir).catch(() => [] as string[]);
  const uploads = await Promise.all(
    ids.map(async (uploadId) => {
      const key = await readFile(join(dir, uploadId, "key"), "utf8").catch(() => undefined);
      // s3rver writes the `key` file once, at CreateMultipartUpload: its mtime is the initiation time.
      const info = await stat(join(dir, uploadId, "key")).catch(() => undefined);
      return key === undefined || !info ? undefined : { key, uploadId, initiated: info.mtime };
    }),
  );
  return uploads.filter((u): u is Upload => u !== undefined).sort((a, b) => (a.key === b.key ? a.uploadId.localeCompare(b.uploadId) : a.key.localeCompare(b.key)));
}

async function multipartExtensions(ctx: Context, next: Next, list: (bucket: string) => Promise<Upload[]>, uploadsDir: (bucket: string) => string): Promise<unknown> {
  const [, bucket, ...rawKey] = ctx.path.split("/");
  const keyParts = rawKey.join("/") === "" ? [] : rawKey;
  if (!bucket || !("uploads" in ctx.query || "uploadId" in ctx.query)) return next();
  if (ctx.method === "GET" && keyParts.length === 0 && "uploads" in ctx.query) {
    requireSignature(ctx);
    ctx.type = "application/xml";
    ctx.body = listXml(bucket, ctx.query as Record<string, string>, await list(bucket));
    return undefined;
  }
  if (ctx.method === "DELETE" && keyParts.length > 0 && typeof ctx.query.uploadId === "string") {
    requireSignature(ctx);
    const key = decodeURIComponent(keyParts.join("/"));
    const found = (await list(bucket)).find((u) => u.uploadId === ctx.query.uploadId && u.key === key);
    if (!found) return xmlError(ctx, 404, "NoSuchUpload", "The specified upload does not exist.");
    await rm(join(uploadsDir(bucket), found.uploadId), { recursive: true, force: true });
    ctx.status = 204;
    return undefined;
  }
  return next();
}

/** s3rver checks signatures in its router, which these routes bypass: insist on a V4 header for our key. */
function requireSignature(ctx: Context): void {
  if (!String(ctx.headers.authorization ?? "").startsWith(`AWS4-HMAC-SHA256 Credential=${S3_ACCESS_KEY_ID}/`)) {
    ctx.throw(403, "AccessDenied");
  }
}

function listXml(bucket: string, query: Record<string, string>, all: Upload[]): string {
  const prefix = query.prefix ?? "";
  const keyMarker = query["key-marker"] ?? "";
  const idMarker = query["upload-id-marker"] ?? "";
  const max = Math.min(Number(query["max-uploads"] ?? 1000) || 1000, 1000);
  const after = all.filter((u) => u.key.startsWith(prefix) && (u.key > keyMarker || (u.key === keyMarker && idMarker !== "" && u.uploadId > idMarker)));
  const page = after.slice(0, max);
  const truncated = after.length > page.length;
  const last = page[page.length - 1];
  const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const uploads = page.map((u) => `<Upload><Key>${esc(u.key)}</Key><UploadId>${u.uploadId}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`);
  return [
    `<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`,
    `<Bucket>${esc(bucket)}</Bucket><KeyMarker>${esc(keyMarker)}</KeyMarker><UploadIdMarker>${esc(idMarker)}</UploadIdMarker>`,
    truncated && last ? `<NextKeyMarker>${esc(last.key)}</NextKeyMarker><NextUploadIdMarker>${last.uploadId}</NextUploadIdMarker>` : "",
    `<Prefix>${esc(prefix)}</Prefix><MaxUploads>${max}</MaxUploads><IsTruncated>${truncated}</IsTruncated>`,
    ...uploads,
    `</ListMultipartUploadsResult>`,
  ].join("");
}

function xmlError(ctx: Context, status: number, code: string, message: string): undefined {
  ctx.status = status;
  ctx.type = "application/xml";
  ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>0</RequestId></Error>`;
  return undefined;
}
