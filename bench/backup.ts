/**
 * `npm run bench -- backup [--size MB] [--stores local,s3,supabase]`
 *
 * Backup and restore throughput of a `--size` MB data directory (default 500: half random bytes,
 * half text, so gzip works as on real storage) into each backup store on loopback, against the same
 * data through `tar` alone in the same run:
 * - backup: `tar -cz` → encrypt (AES-256-GCM STREAM) → store.put, against `tar -cz` → a pipe;
 * - restore: store.get → sha256/size check → decrypt → `tar -xz`, against a local .tar.gz → `tar -xz`.
 * MB/s is of the uncompressed data. The S3 server (s3rver) and the Supabase Storage fake run in a
 * child process (bench/lib/backup-servers.ts); tar runs in its own processes. The tar-alone baseline
 * runs before and after the stores and the faster run counts (the machine is shared). A 500 MB run
 * takes about 2 to 3 minutes on 2 cores; `--size 100` about 30 seconds.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";

import { decryptStream, encryptStream, verifyStream } from "../src/drivers/backup-store/crypto.ts";
import { createLocalStore } from "../src/drivers/backup-store/local.ts";
import { createS3Store } from "../src/drivers/backup-store/s3.ts";
import { createSupabaseStore } from "../src/drivers/backup-store/supabase.ts";
import type { BackupStore } from "../src/drivers/backup-store/types.ts";
import { FAKE_SERVICE_ROLE_KEY } from "../test/fake-supabase-storage/server.ts";
import { S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY } from "../test/helpers/s3-server.ts";

const MASTER_KEY = randomBytes(32).toString("hex");
const FILE_MB = 10;

interface Row {
  readonly path: string;
  readonly seconds: number;
  readonly mbPerSecond: number;
  readonly storedMb: number;
  readonly ratioToTar: number;
}

async function makeData(dir: string, sizeMb: number): Promise<number> {
  await mkdir(dir, { recursive: true });
  const words = Buffer.from("matrix room agent memory message session token vector index backend frontend ");
  let total = 0;
  for (let i = 0; total < sizeMb * 1024 * 1024; i++) {
    const size = Math.min(FILE_MB * 1024 * 1024, sizeMb * 1024 * 1024 - total);
    const data = i % 2 === 0 ? randomBytes(size) : Buffer.alloc(size, words);
    if (i % 2 === 1) for (let j = 0; j < size; j += 4096) data[j] = Math.floor(Math.random() * 256); // not trivially compressible
    await mkdir(join(dir, `d${i % 7}`), { recursive: true });
    await writeFile(join(dir, `d${i % 7}`, `f${i}.bin`), data);
    total += size;
  }
  return total;
}

function tar(args: string[]): ChildProcess & { stdout: Readable; stdin: Writable } {
  const child = spawn("tar", args, { stdio: ["pipe", "pipe", "inherit"] });
  return child as ChildProcess & { stdout: Readable; stdin: Writable };
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) {
    if (child.exitCode !== 0) throw new Error(`tar exited ${child.exitCode}`);
    return;
  }
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`tar exited ${code}`);
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - start) / 1000, value };
}

async function tarAloneBackup(data: string, out: string): Promise<number> {
  const child = tar(["-C", data, "-czf", "-", "."]);
  await Promise.all([pipeline(child.stdout, createWriteStream(out)), exited(child)]);
  return (await stat(out)).size;
}

async function tarAloneRestore(archive: string, target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  const child = tar(["-C", target, "-xzf", "-"]);
  await Promise.all([pipeline(createReadStream(archive), child.stdin), exited(child)]);
}

async function storeBackup(store: BackupStore, data: string, key: string): Promise<{ location: string; sizeBytes: number; sha256: string; keyId: string }> {
  const child = tar(["-C", data, "-czf", "-", "."]);
  const { keyId, stream } = encryptStream(MASTER_KEY, "bench-instance");
  const [stored] = await Promise.all([store.put(key, child.stdout.pipe(stream)), exited(child)]);
  return { ...stored, keyId };
}

async function storeRestore(store: BackupStore, stored: { location: string; sizeBytes: number; sha256: string; keyId: string }, target: string): Promise<void> {
  await mkdir(target, { recursive: true });
  const child = tar(["-C", target, "-xzf", "-"]);
  const body = await store.get(stored.location);
  await Promise.all([pipeline(body, verifyStream(stored.sha256, stored.sizeBytes), decryptStream(MASTER_KEY, "bench-instance", stored.keyId), child.stdin), exited(child)]);
}

async function treeBytes(dir: string): Promise<number> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  let total = 0;
  for (const entry of entries) if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  return total;
}

async function startServers(dir: string): Promise<{ child: ChildProcess; s3Endpoint: string; s3Bucket: string; supabaseUrl: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "lib", "backup-servers.ts"), dir], { stdio: ["pipe", "pipe", "inherit"] });
  const line = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("backup servers did not start within 30 s")), 30_000);
    createInterface({ input: child.stdout! }).once("line", (text) => {
      clearTimeout(timer);
      resolve(text);
    });
    child.once("exit", (code) => reject(new Error(`backup servers exited ${code}`)));
  });
  return { child, ...(JSON.parse(line) as { s3Endpoint: string; s3Bucket: string; supabaseUrl: string }) };
}

function stores(servers: { s3Endpoint: string; s3Bucket: string; supabaseUrl: string }, dir: string): Record<string, BackupStore> {
  return {
    local: createLocalStore(dir),
    s3: createS3Store({ bucket: servers.s3Bucket, endpoint: servers.s3Endpoint, region: "us-east-1", accessKeyId: S3_ACCESS_KEY_ID, secretAccessKey: S3_SECRET_ACCESS_KEY, forcePathStyle: true, prefix: "bench/" }),
    supabase: createSupabaseStore({ url: servers.supabaseUrl, serviceRoleKey: FAKE_SERVICE_ROLE_KEY, bucket: "backups" }),
  };
}

function table(rows: Row[]): string {
  const header = `${"path".padEnd(52)} ${"seconds".padStart(8)} ${"MB/s".padStart(8)} ${"stored MB".padStart(10)} ${"vs tar".padStart(7)}`;
  const lines = rows.map((r) => `${r.path.padEnd(52)} ${r.seconds.toFixed(2).padStart(8)} ${r.mbPerSecond.toFixed(1).padStart(8)} ${r.storedMb.toFixed(1).padStart(10)} ${`x${r.ratioToTar.toFixed(2)}`.padStart(7)}`);
  return [header, ...lines].join("\n");
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { size: { type: "string", default: "500" }, stores: { type: "string", default: "local,s3,supabase" } } });
  const sizeMb = Number(values.size);
  if (!Number.isFinite(sizeMb) || sizeMb <= 0) throw new Error("bench backup: --size must be a positive number of MB");
  const dir = await mkdtemp(join(tmpdir(), "bench-backup-"));
  const servers = await startServers(join(dir, "servers"));
  try {
    const bytes = await makeData(join(dir, "data"), sizeMb);
    const mb = bytes / 1024 / 1024;
    const baselines = async (): Promise<{ backup: number; restore: number; archiveBytes: number }> => {
      const backup = await timed(() => tarAloneBackup(join(dir, "data"), join(dir, "baseline.tar.gz")));
      const restore = await timed(() => tarAloneRestore(join(dir, "baseline.tar.gz"), join(dir, "restored-baseline")));
      await rm(join(dir, "restored-baseline"), { recursive: true, force: true });
      return { backup: backup.seconds, restore: restore.seconds, archiveBytes: backup.value };
    };
    // The baseline runs before and after the stores (the machine is shared); the faster run counts.
    const before = await baselines();
    const measured: Array<{ name: string; backup: number; restore: number; storedBytes: number }> = [];
    const all = stores(servers, join(dir, "local-store"));
    for (const name of values.stores.split(",")) {
      const store = all[name];
      if (!store) throw new Error(`bench backup: unknown store ${name}`);
      const backup = await timed(() => storeBackup(store, join(dir, "data"), `bench-instance/${name}.tar.gz.enc`));
      const target = join(dir, `restored-${name}`);
      const restore = await timed(() => storeRestore(store, backup.value, target));
      if ((await treeBytes(target)) !== bytes) throw new Error(`bench backup: ${name} restored a different number of bytes`);
      measured.push({ name, backup: backup.seconds, restore: restore.seconds, storedBytes: backup.value.sizeBytes });
      await rm(target, { recursive: true, force: true });
      await store.delete(backup.value.location);
    }
    const after = await baselines();
    const tarBackup = Math.min(before.backup, after.backup);
    const tarRestore = Math.min(before.restore, after.restore);
    const row = (path: string, seconds: number, storedBytes: number, reference: number): Row => ({ path, seconds, mbPerSecond: mb / seconds, storedMb: storedBytes / 1024 / 1024, ratioToTar: reference / seconds });
    const rows = [row("backup: tar -cz alone (baseline)", tarBackup, before.archiveBytes, tarBackup), ...measured.map((m) => row(`backup: tar -cz + encrypt + ${m.name} put`, m.backup, m.storedBytes, tarBackup))];
    const restoreRows = [
      row("restore: tar -xz alone (baseline)", tarRestore, before.archiveBytes, tarRestore),
      ...measured.map((m) => row(`restore: ${m.name} get + verify + decrypt + tar -xz`, m.restore, m.storedBytes, tarRestore)),
    ];
    process.stdout.write(`${JSON.stringify({ benchmark: "backup", sizeMb: mb, backup: rows, restore: restoreRows })}\n\n`);
    process.stdout.write(`${table([...rows, ...restoreRows])}\n`);
  } finally {
    servers.child.stdin?.end();
    await new Promise((resolve) => servers.child.once("exit", resolve));
    await rm(dir, { recursive: true, force: true });
  }
}
