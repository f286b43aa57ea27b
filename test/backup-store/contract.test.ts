/**
 * One contract, three stores (src/drivers/backup-store/types.ts): `local` on a temp dir, `s3` against
 * s3rver on loopback (test/helpers/s3-server.ts), `supabase` against the stateful Storage API fake
 * (test/fake-supabase-storage/). Each store gets a harness that can look at its backend directly,
 * so "no object" and "no open upload" are checked where the bytes would be, not through the store.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";

import { CreateMultipartUploadCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createS3Store } from "../../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../../src/drivers/backup-store/supabase.ts";
import type { BackupStore } from "../../src/drivers/backup-store/types.ts";
import { FAKE_SERVICE_ROLE_KEY, type FakeSupabaseStorage, startFakeSupabaseStorage } from "../fake-supabase-storage/server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, type S3TestServer, startS3Server } from "../helpers/s3-server.ts";

interface Harness {
  readonly store: BackupStore;
  readonly locationPattern: RegExp;
  /** Every object the backend holds (keys as the backend names them). */
  objects(): Promise<string[]>;
  /** Unfinished uploads the backend holds (partial files, multipart uploads). */
  pending(): Promise<number>;
  /** Leaves behind what a killed process would, `ageMs` old. */
  leaveStale(ageMs: number): Promise<void>;
  close(): Promise<void>;
}

const HOUR = 3_600_000;

async function localHarness(): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), "store-local-"));
  const root = join(dir, "backups");
  const files = async (): Promise<string[]> =>
    (await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1));
  return {
    store: createLocalStore(dir),
    locationPattern: /^local:inst-1\/[a-z0-9-]+\.tar\.gz\.enc$/,
    objects: async () => (await files()).filter((f) => !f.endsWith(".partial")),
    pending: async () => (await files()).filter((f) => f.endsWith(".partial")).length,
    async leaveStale(ageMs) {
      const path = join(root, "inst-1", `killed-${randomBytes(3).toString("hex")}.tar.gz.enc.abc123.partial`);
      await writeFile(path, "half an archive");
      const when = new Date(Date.now() - ageMs);
      await utimes(path, when, when);
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}

async function s3Harness(): Promise<Harness & { server: S3TestServer }> {
  const dir = await mkdtemp(join(tmpdir(), "store-s3-"));
  const server = await startS3Server(dir);
  const options = { bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "mindroom/" };
  const client = new S3Client({ ...options, forcePathStyle: true, credentials: { accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY } });
  const bucketDir = join(dir, server.bucket);
  return {
    server,
    store: createS3Store(options),
    locationPattern: /^s3:\/\/backups\/mindroom\/inst-1\/[a-z0-9-]+\.tar\.gz\.enc$/,
    objects: async () =>
      (await readdir(bucketDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile() && e.name.endsWith("._S3rver_object")).map((e) => join(e.parentPath, e.name).slice(bucketDir.length + 1)),
    pending: async () => (await server.openUploads()).length,
    async leaveStale(ageMs) {
      const marker = `killed-${randomBytes(3).toString("hex")}`;
      await client.send(new CreateMultipartUploadCommand({ Bucket: server.bucket, Key: `mindroom/inst-1/${marker}.tar.gz.enc` }));
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (ageMs > 0) {
        for (const upload of await server.openUploads()) {
          const when = new Date(Date.now() - ageMs);
          if (upload.key.includes(marker)) await utimes(join(bucketDir, "._S3rver_uploads", upload.uploadId, "key"), when, when);
        }
      }
    },
    async close() {
      client.destroy();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function supabaseHarness(): Promise<Harness & { fake: FakeSupabaseStorage; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "store-supabase-"));
  const fake = await startFakeSupabaseStorage(dir);
  return {
    fake,
    dir,
    store: createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" }),
    locationPattern: /^supabase:\/\/backups\/inst-1\/[a-z0-9-]+\.tar\.gz\.enc$/,
    objects: async () => [...(fake.objects.get("backups")?.keys() ?? [])],
    // The server notices an aborted request body a moment after the client gave up on it.
    pending: async () => {
      const count = async (): Promise<number> => fake.uploadsInFlight() + (await readdir(join(dir, "tmp"))).length;
      for (let i = 0; i < 100 && (await count()) > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      return count();
    },
    // Standard uploads are atomic: a killed upload leaves nothing to clean.
    leaveStale: async () => {},
    close: async () => {
      await fake.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** `size` random bytes in uneven chunks; the source of truth for comparisons. */
function randomSource(size: number): { data: Buffer; stream: () => Readable } {
  const data = randomBytes(size);
  return {
    data,
    stream: () =>
      Readable.from(
        (function* () {
          for (let offset = 0; offset < size; ) {
            const length = 1 + Math.floor(Math.random() * 300_000);
            yield data.subarray(offset, offset + length);
            offset += length;
          }
        })(),
      ),
  };
}

/** Sends `bytes` then fails, or stalls until aborted: a tar that died halfway. */
function failingSource(bytes: number, mode: "error" | "stall"): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent < bytes) {
        const chunk = randomBytes(Math.min(256 * 1024, bytes - sent));
        sent += chunk.length;
        this.push(chunk);
      } else if (mode === "error") {
        this.destroy(new Error("tar: Unexpected EOF in archive"));
      }
    },
  });
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (data: Buffer): string => createHash("sha256").update(data).digest("hex");
const newKey = (): string => `inst-1/${randomBytes(6).toString("hex")}-backend.tar.gz.enc`;

const STORES: Record<string, () => Promise<Harness>> = { local: localHarness, s3: s3Harness, supabase: supabaseHarness };

for (const [kind, start] of Object.entries(STORES)) {
  describe(`backup store contract: ${kind}`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await start();
    });
    afterAll(async () => {
      await h.close();
    });

    test("a multi-MB stream round-trips byte for byte, with its size and sha256", async () => {
      const source = randomSource(21 * 1024 * 1024 + 12_345); // three 8 MiB S3 parts, the last one short
      const stored = await h.store.put(newKey(), source.stream());
      expect(stored.location).toMatch(h.locationPattern);
      expect(stored.sizeBytes).toBe(source.data.length);
      expect(stored.sha256).toBe(sha256(source.data));
      const back = await readAll(await h.store.get(stored.location));
      expect(back.length).toBe(source.data.length);
      expect(back.equals(source.data)).toBe(true);
      expect(await h.pending()).toBe(0);
    });

    test("an empty and a tiny object round-trip", async () => {
      for (const data of [Buffer.alloc(0), Buffer.from("x")]) {
        const stored = await h.store.put(newKey(), Readable.from([data]));
        expect(stored.sizeBytes).toBe(data.length);
        expect((await readAll(await h.store.get(stored.location))).equals(data)).toBe(true);
      }
    });

    test("a source that fails mid-stream rejects and leaves no object and no open upload", async () => {
      const before = await h.objects();
      const key = newKey();
      await expect(h.store.put(key, failingSource(10 * 1024 * 1024, "error"))).rejects.toThrow(/Unexpected EOF/);
      expect(await h.objects()).toEqual(before);
      expect(await h.pending()).toBe(0);
    });

    test("an abort mid-stream rejects and leaves no object and no open upload", async () => {
      const before = await h.objects();
      const controller = new AbortController();
      const put = h.store.put(newKey(), failingSource(9 * 1024 * 1024, "stall"), controller.signal);
      setTimeout(() => controller.abort(new Error("shutting down")), 300);
      await expect(put).rejects.toThrow();
      expect(await h.objects()).toEqual(before);
      expect(await h.pending()).toBe(0);
    });

    test("delete is idempotent and a deleted object cannot be read", async () => {
      const stored = await h.store.put(newKey(), Readable.from([Buffer.from("to be deleted")]));
      await h.store.delete(stored.location);
      await expect(h.store.get(stored.location)).rejects.toThrow(/does not exist/);
      await h.store.delete(stored.location);
      await h.store.delete(stored.location.replace(/[a-z0-9]+-backend/, "never-written-backend"));
    });

    test("get of a missing object rejects", async () => {
      const missing = (await h.store.put(newKey(), Readable.from([Buffer.from("x")]))).location.replace(/[a-z0-9]+-backend/, "missing-backend");
      await expect(h.store.get(missing)).rejects.toThrow(/does not exist/);
    });

    test("unsafe keys and foreign locations are refused", async () => {
      await expect(h.store.put("../etc/passwd", Readable.from([Buffer.from("x")]))).rejects.toThrow(/invalid backup object key/);
      await expect(h.store.put("/abs/key", Readable.from([Buffer.from("x")]))).rejects.toThrow(/invalid backup object key/);
      await expect(h.store.get("ftp://elsewhere/x")).rejects.toThrow(/is not in the/);
    });

    test("cleanupStale removes what a killed process left, only when old enough, and keeps completed objects", async () => {
      const kept = await h.store.put(newKey(), Readable.from([Buffer.from("completed")]));
      await h.leaveStale(2 * HOUR);
      await h.leaveStale(0);
      const left = await h.pending();
      const cleaned = await h.store.cleanupStale(HOUR);
      expect(cleaned).toBe(left > 0 ? 1 : 0);
      expect(await h.pending()).toBe(left > 0 ? 1 : 0);
      expect(await h.store.cleanupStale(HOUR)).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 50)); // the fresh one is now older than 1 ms, whatever the clock granularity
      expect(await h.store.cleanupStale(1)).toBe(left > 0 ? 1 : 0);
      expect(await h.pending()).toBe(0);
      expect((await readAll(await h.store.get(kept.location))).toString()).toBe("completed");
    });
  });
}

describe("local store specifics", () => {
  test("files are 0600, directories 0700, and an existing object is never replaced", async () => {
    const dir = await mkdtemp(join(tmpdir(), "store-local-modes-"));
    try {
      const store = createLocalStore(dir);
      const stored = await store.put("inst-9/a/b.tar.gz.enc", Readable.from([Buffer.from("secret")]));
      expect(stored.location).toBe("local:inst-9/a/b.tar.gz.enc");
      expect((await stat(join(dir, "backups", "inst-9", "a", "b.tar.gz.enc"))).mode & 0o777).toBe(0o600);
      expect((await stat(join(dir, "backups", "inst-9", "a"))).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, "backups", "inst-9"))).mode & 0o777).toBe(0o700);
      await expect(store.put("inst-9/a/b.tar.gz.enc", Readable.from([Buffer.from("other")]))).rejects.toThrow(/already exists/);
      expect((await readAll(await store.get(stored.location))).toString()).toBe("secret");
      expect((await readdir(join(dir, "backups", "inst-9", "a"))).filter((f) => f.endsWith(".partial"))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
