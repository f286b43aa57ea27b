/**
 * Backup commands (issue 8). The work itself (taking a backup, restoring) is always done by a
 * reconcile pass of the instance, journaled like every other action: when a daemon leads, the
 * request row wakes it (NOTIFY) and this command waits for the row to finish; otherwise the
 * command takes the lease and runs that pass itself, so it never acts beside a leader.
 *
 *   backup ID [--component C] [--json] [--timeout 30m]
 *   restore BACKUP_ID [--instance ID] [--force-cross-account] [--json] [--timeout 30m]
 *   import FILE.tar.gz --instance ID [--component backend|matrix] [--json] [--timeout 30m]
 *   backups list [ID] [--json] | download BACKUP_ID --out FILE | url BACKUP_ID [--expires 15m] [--base-url URL] | verify [BACKUP_ID]
 */
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm, stat } from "node:fs/promises";
import { userInfo } from "node:os";
import { resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import ms from "ms";

import { createBackupStore } from "../drivers/backup-store/index.ts";
import type { BackupStore } from "../drivers/backup-store/types.ts";
import { TerminalError } from "../errors.ts";
import { type Component,COMPONENTS } from "../reconciler/types.ts";
import { verifyBackup } from "../runtime/backup-jobs.ts";
import { MAX_LINK_TTL_MS, signDownloadPath } from "../runtime/backup-links.ts";
import { createBackupPort, openArchive } from "../runtime/backups.ts";
import { needsSandbox } from "../runtime/hosts.ts";
import { loadKeyMaterial } from "../runtime/secrets.ts";
import { type BackupRow, backupsOfRequest, findBackup, listBackups, requestBackup } from "../state/backups.ts";
import { acquireOrRenew, RECONCILER_LEASE, release } from "../state/lease.ts";
import { findRestore, requestRestore } from "../state/restores.ts";
import { type CommandContext, printTable, withDatabase } from "./common.ts";
import { openControllerContext, resolveKey } from "./controller-context.ts";

const DEFAULT_TIMEOUT = "30m";
const POLL_MS = 500;

class UsageError extends TerminalError {
  constructor(message: string) {
    super("Usage", message);
  }
}

function duration(text: string, what: string): number {
  const value = /^\d+$/.test(text) ? undefined : ms(text as ms.StringValue);
  if (typeof value !== "number" || !(value > 0)) throw new UsageError(`${what}: expected a duration with a unit such as 15m or 1h, got ${JSON.stringify(text)}`);
  return value;
}

function component(text: string | undefined): Component | null {
  if (text === undefined) return null;
  if (!(COMPONENTS as readonly string[]).includes(text)) throw new UsageError(`--component: expected one of ${COMPONENTS.join(", ")}`);
  return text as Component;
}

async function instanceOf(ctx: CommandContext, id: string): Promise<{ instanceId: string; subscriptionId: string; subdomain: string }> {
  const key = await resolveKey(ctx.db.sql, id);
  if (!key?.instanceId || !key.subdomain) throw new UsageError(`no instance matches ${JSON.stringify(id)}`);
  return { instanceId: key.instanceId, subscriptionId: key.subscriptionId, subdomain: key.subdomain };
}

/** Runs the instance's pass here when no daemon leads; otherwise the daemon was woken by the row's NOTIFY. */
async function workRequested(ctx: CommandContext, subscriptionId: string, timeoutMs: number): Promise<void> {
  const holder = `cli-backups-${process.pid}`;
  const lease = await acquireOrRenew(ctx.db.sql, { name: RECONCILER_LEASE, holder, ttlMs: timeoutMs });
  if (!lease.leader) {
    process.stderr.write(`the running controller (${lease.holder ?? "leader"}) takes it; waiting\n`);
    return;
  }
  const controller = await openControllerContext(ctx, () => lease.epoch);
  try {
    await controller.reconciler.pass(subscriptionId, { signal: AbortSignal.timeout(timeoutMs) });
  } finally {
    await controller.close();
    await release(ctx.db.sql, { name: RECONCILER_LEASE, holder });
  }
}

/** Polls until `done` answers a value or the timeout passes. */
async function waitFor<T>(timeoutMs: number, done: () => Promise<T | undefined>): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await done();
    if (value !== undefined || Date.now() >= deadline) return value;
    await sleep(POLL_MS);
  }
}

function backupJson(row: BackupRow): Record<string, unknown> {
  return { id: row.id, component: row.component, sizeBytes: row.sizeBytes, sha256: row.sha256, location: row.location, status: row.status, ...(row.error ? { error: row.error } : {}) };
}

function printBackups(rows: readonly BackupRow[], json: boolean): void {
  if (json) return void process.stdout.write(`${JSON.stringify({ backups: rows.map(backupJson) })}\n`);
  printTable(
    ["ID", "INSTANCE", "COMPONENT", "TYPE", "STATUS", "SIZE", "SHA256", "CREATED", "LOCATION / ERROR"],
    rows.map((r) => [r.id, r.subdomain, r.component ?? "-", r.type, r.status, r.sizeBytes === null ? "-" : String(r.sizeBytes), r.sha256?.slice(0, 12) ?? "-", r.createdAt.toISOString(), r.error ?? r.location ?? "-"]),
  );
}

async function backupCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { component: { type: "string" }, json: { type: "boolean" }, timeout: { type: "string" } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError("expected one instance id, subdomain or subscription id");
  const timeoutMs = duration(values.timeout ?? DEFAULT_TIMEOUT, "--timeout");
  return withDatabase(async (ctx) => {
    const target = await instanceOf(ctx, positionals[0]!);
    const requestId = await requestBackup(ctx.db.sql, target.instanceId, component(values.component));
    await workRequested(ctx, target.subscriptionId, timeoutMs);
    const rows = await waitFor(timeoutMs, async () => {
      const current = await backupsOfRequest(ctx.db.sql, requestId);
      return current.every((row) => row.status === "completed" || row.status === "failed") ? current : undefined;
    });
    if (!rows) {
      process.stderr.write(`backup ${requestId} did not finish within ${values.timeout ?? DEFAULT_TIMEOUT}; see \`mindroom-reconciler backups list ${target.subdomain}\`\n`);
      return 1;
    }
    printBackups(rows, values.json === true);
    return rows.every((row) => row.status === "completed") ? 0 : 1;
  });
}

/** Checks a restore request: the backup is complete, and crosses accounts only when forced. */
async function checkRestore(ctx: CommandContext, backup: BackupRow | undefined, target: { instanceId: string }, force: boolean): Promise<BackupRow> {
  if (!backup) throw new UsageError("no such backup");
  if (backup.status !== "completed") throw new UsageError(`backup ${backup.id} is ${backup.status}: only a completed backup can be restored`);
  const [owner] = await ctx.db.sql<{ account_id: string }[]>`select account_id from public.instances where id = ${target.instanceId}`;
  if (owner?.account_id !== backup.accountId && !force) {
    throw new UsageError(`backup ${backup.id} belongs to another account than the target instance; pass --force-cross-account if this is intended`);
  }
  return backup;
}

async function restoreAndWait(ctx: CommandContext, backupId: string, target: { instanceId: string; subscriptionId: string }, timeoutMs: number, json: boolean): Promise<number> {
  const restoreId = await requestRestore(ctx.db.sql, backupId, target.instanceId, `cli:${userInfo().username}`);
  await workRequested(ctx, target.subscriptionId, timeoutMs);
  const row = await waitFor(timeoutMs, async () => {
    const current = await findRestore(ctx.db.sql, restoreId);
    return current && (current.status === "completed" || current.status === "failed") ? current : undefined;
  });
  if (!row) {
    process.stderr.write(`restore ${restoreId} did not finish in time; it goes on in the controller\n`);
    return 1;
  }
  const result = { id: row.id, backupId: row.backupId, instanceId: row.instanceId, component: row.component, status: row.status, safetyBackupId: row.safetyBackupId, error: row.error };
  process.stdout.write(json ? `${JSON.stringify(result)}\n` : `restore ${row.id}: ${row.status}${row.error ? `: ${row.error}` : ""} (safety backup ${row.safetyBackupId ?? "-"})\n`);
  return row.status === "completed" ? 0 : 1;
}

async function restoreCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { instance: { type: "string" }, "force-cross-account": { type: "boolean" }, json: { type: "boolean" }, timeout: { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new UsageError("expected one backup id");
  const timeoutMs = duration(values.timeout ?? DEFAULT_TIMEOUT, "--timeout");
  return withDatabase(async (ctx) => {
    const backup = await findBackup(ctx.db.sql, positionals[0]!);
    const target = await instanceOf(ctx, values.instance ?? backup?.instanceId ?? positionals[0]!);
    await checkRestore(ctx, backup, target, values["force-cross-account"] === true);
    return restoreAndWait(ctx, backup!.id, target, timeoutMs, values.json === true);
  });
}

async function keyMaterial(ctx: CommandContext): Promise<{ masterKey: string; store: BackupStore }> {
  const keys = await loadKeyMaterial(ctx.config, await needsSandbox(ctx.db.sql, ctx.config));
  return { masterKey: keys.masterKey, store: createBackupStore(ctx.config, resolve(ctx.config.dataDir)) };
}

/** Uploads a self-hosted MindRoom's plain tar.gz as an `import` backup, then restores it. */
async function importCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: { instance: { type: "string" }, component: { type: "string" }, json: { type: "boolean" }, timeout: { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1 || !values.instance) throw new UsageError("expected FILE.tar.gz --instance ID");
  const file = positionals[0]!;
  if (!(await stat(file).catch(() => undefined))?.isFile()) throw new UsageError(`${file} is not a readable file`);
  const timeoutMs = duration(values.timeout ?? DEFAULT_TIMEOUT, "--timeout");
  return withDatabase(async (ctx) => {
    const target = await instanceOf(ctx, values.instance!);
    const { masterKey, store } = await keyMaterial(ctx);
    const port = createBackupPort({ sql: ctx.db.sql, store, masterKey, retentionMs: ctx.config.backups.retentionMs, manualPerDay: ctx.config.backups.manualPerDay });
    const record = await port.begin(target.instanceId, component(values.component) ?? "backend", "import");
    const sink = await port.open(target.instanceId, record);
    try {
      await pipeline(createReadStream(file), sink.stream as NodeJS.WritableStream);
      await sink.commit();
    } catch (error) {
      await sink.abort();
      await port.fail(record, (error as Error).message);
      throw error;
    }
    process.stderr.write(`uploaded ${file} as backup ${record.id}; restoring into ${target.subdomain}\n`);
    return restoreAndWait(ctx, record.id, target, timeoutMs, values.json === true);
  });
}

async function listCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" } }, allowPositionals: true, strict: true });
  return withDatabase(async (ctx) => {
    const instanceId = positionals[0] ? (await instanceOf(ctx, positionals[0])).instanceId : null;
    printBackups(await listBackups(ctx.db.sql, instanceId), values.json === true);
    return 0;
  });
}

/** Streams, decrypts and verifies into FILE; a failed check leaves no file behind. */
async function downloadCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { out: { type: "string" } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1 || !values.out) throw new UsageError("expected BACKUP_ID --out FILE");
  const out = values.out;
  const partial = `${out}.partial`;
  return withDatabase(async (ctx) => {
    const { masterKey, store } = await keyMaterial(ctx);
    try {
      await pipeline(await openArchive({ sql: ctx.db.sql, store, masterKey }, positionals[0]!), createWriteStream(partial, { mode: 0o600 }));
      await rename(partial, out);
    } catch (error) {
      await rm(partial, { force: true });
      process.stderr.write(`download failed, nothing written: ${(error as Error).message}\n`);
      return 1;
    }
    process.stdout.write(`${out}\n`);
    return 0;
  });
}

async function urlCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, options: { expires: { type: "string" }, "base-url": { type: "string" } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError("expected one backup id");
  const ttl = duration(values.expires ?? "15m", "--expires");
  if (ttl > MAX_LINK_TTL_MS) throw new UsageError("--expires: at most 7d");
  return withDatabase(async (ctx) => {
    const backup = await findBackup(ctx.db.sql, positionals[0]!);
    if (backup?.status !== "completed") throw new UsageError(`backup ${positionals[0]!} is not a completed backup`);
    const { masterKey } = await keyMaterial(ctx);
    const link = signDownloadPath(masterKey, backup.id, new Date(), ttl);
    const base = (values["base-url"] ?? `http://127.0.0.1:${ctx.config.port}`).replace(/\/+$/, "");
    process.stdout.write(`${base}${link.path}\n`);
    process.stderr.write(`valid until ${link.expiresAt.toISOString()}\n`);
    return 0;
  });
}

async function verifyCommand(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, options: {}, allowPositionals: true, strict: true });
  return withDatabase(async (ctx) => {
    const { masterKey, store } = await keyMaterial(ctx);
    const ids = positionals[0] ? [positionals[0]] : (await listBackups(ctx.db.sql, null, 10_000)).filter((row) => row.status === "completed").map((row) => row.id);
    let failed = 0;
    for (const id of ids) {
      try {
        const entries = await verifyBackup({ sql: ctx.db.sql, store, masterKey }, id, new Date());
        process.stdout.write(`ok    ${id}: sha256, size, decryption and tar listing (${entries} entries)\n`);
      } catch (error) {
        failed += 1;
        process.stdout.write(`FAIL  ${id}: ${(error as Error).message}\n`);
      }
    }
    return failed > 0 ? 1 : 0;
  });
}

const BACKUPS_SUBCOMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  list: listCommand,
  download: downloadCommand,
  url: urlCommand,
  verify: verifyCommand,
};

/** `backups SUBCOMMAND ...` */
export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const command = sub ? BACKUPS_SUBCOMMANDS[sub] : undefined;
  if (!command) throw new UsageError(`expected one of ${Object.keys(BACKUPS_SUBCOMMANDS).join(", ")}`);
  return command(rest);
}

export const backup = { run: backupCommand };
export const restore = { run: restoreCommand };
export const importArchive = { run: importCommand };
