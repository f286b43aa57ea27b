/**
 * What only one store has: the S3 checksum mode that S3-compatible servers accept, and the Supabase
 * bucket, auth and size-limit behaviour. The shared contract is in contract.test.ts.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";

import { S3Client } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createS3Store } from "../../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../../src/drivers/backup-store/supabase.ts";
import { FAKE_SERVICE_ROLE_KEY, type FakeSupabaseStorage, startFakeSupabaseStorage } from "../fake-supabase-storage/server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, type S3TestServer, startS3Server } from "../helpers/s3-server.ts";

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The SDK's flexible-checksum extensions (default since 3.729): CRC32 headers on every upload, and
 * `aws-chunked` bodies with a trailing checksum for streams. Many S3-compatible servers reject them.
 */
const usesChecksumExtensions = (headers: Record<string, string | string[] | undefined>): boolean =>
  Object.keys(headers).some((name) => name.startsWith("x-amz-checksum-") || name === "x-amz-sdk-checksum-algorithm" || name === "x-amz-trailer") ||
  String(headers["content-encoding"] ?? "").includes("aws-chunked") ||
  String(headers["x-amz-content-sha256"] ?? "").startsWith("STREAMING-");

describe("s3 store against an S3-compatible server", () => {
  let dir: string;
  let server: S3TestServer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "s3-specific-"));
    server = await startS3Server(dir);
  });
  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const credentials = { accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY };

  test("uploads never use checksum headers or aws-chunked trailers, single part or multipart", async () => {
    const store = createS3Store({ bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", ...credentials, forcePathStyle: true, prefix: "mindroom/" });
    const from = server.requests.length;
    for (const size of [1000, 17 * 1024 * 1024]) {
      const data = randomBytes(size);
      const stored = await store.put(`inst-1/${size}.tar.gz.enc`, Readable.from([data]));
      expect((await readAll(await store.get(stored.location))).equals(data)).toBe(true);
    }
    const sent = server.requests.slice(from);
    expect(sent.filter((r) => r.method === "PUT").length).toBeGreaterThanOrEqual(4); // one PutObject, three UploadParts
    expect(sent.filter((r) => usesChecksumExtensions(r.headers)).map((r) => `${r.method} ${r.url}`)).toEqual([]);
  });

  test("control: the SDK's default checksum mode does send them (what the store turns off)", async () => {
    const client = new S3Client({ region: "us-east-1", endpoint: server.endpoint, forcePathStyle: true, credentials });
    const from = server.requests.length;
    try {
      await new Upload({ client, params: { Bucket: server.bucket, Key: "control/default.bin", Body: Readable.from([randomBytes(6 * 1024 * 1024)]) }, partSize: 5 * 1024 * 1024 })
        .done()
        .catch(() => undefined);
    } finally {
      client.destroy();
    }
    expect(server.requests.slice(from).some((r) => usesChecksumExtensions(r.headers))).toBe(true);
  });

  test("an unknown access key is refused by the server and leaves nothing", async () => {
    // s3rver checks the access key id but not V4 signatures, so a wrong secret would pass here.
    const store = createS3Store({ bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", accessKeyId: "UNKNOWN", secretAccessKey: "wrong-secret-value", forcePathStyle: true, prefix: "mindroom/" });
    const error = await store.put("inst-1/denied.tar.gz.enc", Readable.from([Buffer.from("x")])).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/s3 upload failed: InvalidAccessKeyId/);
    expect((error as Error).message).not.toContain("wrong-secret-value");
    expect(await server.openUploads()).toEqual([]);
  });

  test("cleanupStale pages through ListMultipartUploads and only touches its prefix", async () => {
    const client = new S3Client({ region: "us-east-1", endpoint: server.endpoint, forcePathStyle: true, credentials });
    const { CreateMultipartUploadCommand } = await import("@aws-sdk/client-s3");
    try {
      for (let i = 0; i < 3; i++) await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: `paged/inst-${i}/x.tar.gz.enc` }));
      await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: "someone-else/x" }));
    } finally {
      client.destroy();
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    const store = createS3Store({ bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", ...credentials, forcePathStyle: true, prefix: "paged/" });
    expect(await store.cleanupStale(1)).toBe(3);
    expect((await server.openUploads()).map((u) => u.key)).toEqual(["someone-else/x"]);
  });
});

describe("supabase store against the Storage API fake", () => {
  let dir: string;
  let fake: FakeSupabaseStorage;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "supabase-specific-"));
    fake = await startFakeSupabaseStorage(dir, { globalFileSizeLimit: 1024 * 1024 });
  });
  afterAll(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("creates the bucket private on first put, once", async () => {
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "fresh" });
    expect(fake.buckets.has("fresh")).toBe(false);
    await store.put("inst-1/a.tar.gz.enc", Readable.from([Buffer.from("a")]));
    await store.put("inst-1/b.tar.gz.enc", Readable.from([Buffer.from("b")]));
    expect(fake.buckets.get("fresh")?.public).toBe(false);
    expect(fake.requests.filter((r) => r === "POST /storage/v1/bucket")).toHaveLength(1);
  });

  test("refuses a public bucket", async () => {
    fake.buckets.set("open", { id: "open", name: "open", public: true, file_size_limit: null, created_at: new Date().toISOString() });
    fake.objects.set("open", new Map());
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "open" });
    await expect(store.put("inst-1/a.tar.gz.enc", Readable.from([Buffer.from("a")]))).rejects.toThrow(/bucket open is public/);
    expect(fake.objects.get("open")?.size).toBe(0);
  });

  test("a wrong service role key is refused and the key is not in the error", async () => {
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: "wrong-key-value", bucket: "backups" });
    const error = await store.put("inst-1/a.tar.gz.enc", Readable.from([Buffer.from("a")])).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/invalid signature/);
    expect((error as Error).message).not.toContain("wrong-key-value");
  });

  test("an archive over the store's limit is refused mid-stream with a clear error, leaving nothing", async () => {
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "limited", maxObjectBytes: 512 * 1024 });
    await expect(store.put("inst-1/big.tar.gz.enc", Readable.from([randomBytes(800 * 1024)]))).rejects.toThrow(/larger than 524288 bytes.*BACKUP_STORE=s3/);
    expect(fake.objects.get("limited")?.size).toBe(0);
  });

  test("the project's file size limit answered by the server maps to the same clear error", async () => {
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "project-limit" });
    await expect(store.put("inst-1/big.tar.gz.enc", Readable.from([randomBytes(2 * 1024 * 1024)]))).rejects.toThrow(/Supabase Storage standard upload.*BACKUP_STORE=s3/);
    expect(fake.objects.get("project-limit")?.size).toBe(0);
  });

  test("an existing object is never replaced", async () => {
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" });
    const stored = await store.put("inst-1/once.tar.gz.enc", Readable.from([Buffer.from("first")]));
    await expect(store.put("inst-1/once.tar.gz.enc", Readable.from([Buffer.from("second")]))).rejects.toThrow(/already exists/);
    expect((await readAll(await store.get(stored.location))).toString()).toBe("first");
  });
});

describe("every wait is bounded", () => {
  test("a server that accepts and never answers fails get within the request timeout (s3 and supabase)", async () => {
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const s3 = createS3Store({ bucket: "b-1", endpoint: url, region: "us-east-1", accessKeyId: "k", secretAccessKey: "s", forcePathStyle: true, prefix: "p/", requestTimeoutMs: 300 });
      const supabase = createSupabaseStore({ url, serviceRoleKey: "k", bucket: "backups", requestTimeoutMs: 300 });
      const started = Date.now();
      await expect(s3.get("s3://b-1/p/x")).rejects.toThrow();
      await expect(supabase.get("supabase://backups/x")).rejects.toThrow(/no response within 300 ms|aborted/i);
      expect(Date.now() - started).toBeLessThan(20_000); // three SDK attempts at most, each cut at 300 ms
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  test("a download that streams for longer than the request timeout is not cut off (s3 and supabase)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "slow-read-"));
    const s3server = await startS3Server(join(dir, "s3"));
    const fake = await startFakeSupabaseStorage(join(dir, "supabase"));
    try {
      const stores = [
        createS3Store({ bucket: s3server.bucket, endpoint: s3server.endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "p/", requestTimeoutMs: 400 }),
        createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups", requestTimeoutMs: 400 }),
      ];
      for (const store of stores) {
        const data = randomBytes(4 * 1024 * 1024);
        const stored = await store.put("inst-1/slow.tar.gz.enc", Readable.from([data]));
        const body = await store.get(stored.location);
        const chunks: Buffer[] = [];
        const started = Date.now();
        for await (const chunk of body) {
          chunks.push(chunk as Buffer);
          await new Promise((resolve) => setTimeout(resolve, 20)); // a steady, slow consumer
        }
        expect(Date.now() - started, store.kind).toBeGreaterThan(400);
        expect(Buffer.concat(chunks).equals(data), store.kind).toBe(true);
      }
    } finally {
      await s3server.close();
      await fake.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
