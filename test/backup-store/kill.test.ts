/**
 * SIGKILL during an upload, for each store: the process doing `put` dies without any cleanup of its
 * own. Afterwards no object exists at the key, and what it left (a partial file, an open multipart
 * upload) is removed by `cleanupStale`, as the daemon does at start-up.
 */
import { spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";

import { expect, test } from "vitest";

import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import { createS3Store } from "../../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../../src/drivers/backup-store/supabase.ts";
import { FAKE_SERVICE_ROLE_KEY, startFakeSupabaseStorage } from "../fake-supabase-storage/server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY, startS3Server } from "../helpers/s3-server.ts";

/** Runs put-child.ts for `kind`, waits until it is mid-upload, and SIGKILLs it. */
async function killMidUpload(kind: string, target: string): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "put-child.ts"), kind, target], { stdio: ["ignore", "pipe", "inherit"] });
  const exit = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("child did not start streaming within 30 s")), 30_000);
    createInterface({ input: child.stdout }).once("line", (text) => {
      clearTimeout(timer);
      resolve(text);
    });
  });
  expect(line).toBe("streaming");
  await new Promise((resolve) => setTimeout(resolve, 300)); // let the in-flight part land
  child.kill("SIGKILL");
  expect(await exit).toBe("SIGKILL");
}

test("local: a killed put leaves only a partial file, which cleanupStale removes", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kill-local-"));
  try {
    await killMidUpload("local", dir);
    const files = await readdir(join(dir, "backups", "inst-1"));
    expect(files.filter((f) => !f.endsWith(".partial"))).toEqual([]);
    expect(files.filter((f) => f.endsWith(".partial"))).toHaveLength(1);
    const store = createLocalStore(dir);
    await expect(store.get("local:inst-1/killed.tar.gz.enc")).rejects.toThrow(/does not exist/);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(await store.cleanupStale(1)).toBe(1);
    expect(await readdir(join(dir, "backups", "inst-1"))).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("s3: a killed put leaves an open multipart upload and no object; cleanupStale aborts it", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kill-s3-"));
  const server = await startS3Server(dir);
  try {
    await killMidUpload("s3", server.endpoint);
    const open = await server.openUploads();
    expect(open.map((u) => u.key)).toEqual(["mindroom/inst-1/killed.tar.gz.enc"]);
    const store = createS3Store({ bucket: server.bucket, endpoint: server.endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "mindroom/" });
    await expect(store.get("s3://backups/mindroom/inst-1/killed.tar.gz.enc")).rejects.toThrow(/does not exist/);
    expect(await store.cleanupStale(1)).toBe(1);
    expect(await server.openUploads()).toEqual([]);
    // The store still works after the cleanup.
    const stored = await store.put("inst-1/after.tar.gz.enc", Readable.from([Buffer.from("ok")]));
    expect(stored.sizeBytes).toBe(2);
  } finally {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test("supabase: a killed put leaves no object and nothing in flight", async () => {
  const dir = await mkdtemp(join(tmpdir(), "kill-supabase-"));
  const fake = await startFakeSupabaseStorage(dir);
  try {
    await killMidUpload("supabase", fake.url);
    for (let i = 0; i < 100 && fake.uploadsInFlight() > 0; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fake.uploadsInFlight()).toBe(0);
    expect([...(fake.objects.get("backups")?.keys() ?? [])]).toEqual([]);
    expect(await readdir(join(dir, "tmp"))).toEqual([]);
    const store = createSupabaseStore({ url: fake.url, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" });
    await expect(store.get("supabase://backups/inst-1/killed.tar.gz.enc")).rejects.toThrow(/does not exist/);
  } finally {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  }
});
