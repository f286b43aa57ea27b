/**
 * The reconciler's backup and restore ports over Postgres (src/state/backups.ts, restores.ts) and
 * the backup store (src/drivers/backup-store/): every archive is encrypted with the instance's key
 * before it leaves the process, and every read is decrypted and checked against the recorded
 * sha256 and size.
 */
import { randomBytes } from "node:crypto";
import { PassThrough, type Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { Sql } from "postgres";

import { decryptStream, encryptStream, verifyStream } from "../drivers/backup-store/crypto.ts";
import type { BackupStore } from "../drivers/backup-store/types.ts";
import { TerminalError } from "../errors.ts";
import type { BackupRecord, Backups, BackupSink, Restores } from "../reconciler/types.ts";
import { beginBackup, claimRequested, completeBackup, completedTeardownBackups, failBackup, findBackup } from "../state/backups.ts";
import { markReplaced, markRestoreFinished, markRestoreStarted, nextRestore } from "../state/restores.ts";
import type { BackupMetrics } from "./backup-metrics.ts";

export interface BackupWiring {
  readonly sql: Sql;
  readonly store: BackupStore;
  /** Secret: derives each instance's archive key. */
  readonly masterKey: string;
  readonly retentionMs: number;
  readonly manualPerDay: number;
  readonly metrics?: BackupMetrics;
}

export function createBackupPort(wiring: BackupWiring): Backups {
  const { sql } = wiring;
  return {
    begin: (instanceId, component, type) => beginBackup(sql, instanceId, component, type, wiring.retentionMs),
    open: (instanceId, record) => Promise.resolve(openSink(wiring, instanceId, record)),
    fail: (record, error) => failBackup(sql, record.id, error),
    completedTeardownBackups: (instanceId, since) => completedTeardownBackups(sql, instanceId, since),
    claimRequested: (instanceId, components) =>
      claimRequested(sql, instanceId, { components, manualPerDay: wiring.manualPerDay, retentionMs: wiring.retentionMs }),
  };
}

/**
 * The object key of one upload attempt: the row's id plus a random attempt id, since a store never
 * replaces an object. A retried backup uploads anew; only the attempt that completes is recorded.
 */
export function objectKey(instanceId: string, record: Pick<BackupRecord, "id" | "component">): string {
  return `${instanceId}/${record.id}-${record.component}-${randomBytes(4).toString("hex")}.tar.gz.enc`;
}

function openSink(wiring: BackupWiring, instanceId: string, record: BackupRecord): BackupSink {
  const input = new PassThrough();
  const { keyId, stream: encrypt } = encryptStream(wiring.masterKey, instanceId);
  const abort = new AbortController();
  const encrypted = new PassThrough();
  const piped = pipeline(input, encrypt, encrypted);
  const stored = wiring.store.put(objectKey(instanceId, record), encrypted, abort.signal);
  piped.catch(() => {});
  stored.catch(() => {});
  const started = process.hrtime.bigint();
  const { metrics } = wiring;
  const store = wiring.store.kind;
  return {
    stream: input,
    commit: async () => {
      if (!input.writableEnded) input.end();
      await piped;
      const object = await stored;
      await completeBackup(wiring.sql, record.id, { ...object, keyId });
      metrics?.duration.observe({ store }, Number(process.hrtime.bigint() - started) / 1e9);
      metrics?.bytes.inc({ store }, object.sizeBytes);
      metrics?.backups.inc({ type: record.type, result: "success" });
      return object;
    },
    abort: async () => {
      abort.abort(new Error("backup aborted"));
      input.destroy(new Error("backup aborted"));
      await stored.catch(() => {});
      metrics?.backups.inc({ type: record.type, result: "failure" });
    },
  };
}

/**
 * The decrypted archive of a completed backup, checked as it streams: the stored bytes against
 * the recorded sha256 and size, each encrypted chunk against its tag. The stream errors on any
 * mismatch (at the latest at its end).
 */
export async function openArchive(wiring: Pick<BackupWiring, "sql" | "store" | "masterKey">, backupId: string, signal?: AbortSignal): Promise<Readable> {
  const backup = await findBackup(wiring.sql, backupId);
  if (!backup) throw new TerminalError("BackupNotFound", `backup ${backupId} does not exist`);
  if (backup.status !== "completed" || !backup.location || !backup.sha256 || backup.sizeBytes === null || !backup.keyId) {
    throw new TerminalError("BackupNotCompleted", `backup ${backupId} is ${backup.status}, not completed: it cannot be read`);
  }
  const stored = await wiring.store.get(backup.location, signal);
  const plain = new PassThrough();
  pipeline(stored, verifyStream(backup.sha256, backup.sizeBytes), decryptStream(wiring.masterKey, backup.instanceId, backup.keyId), plain, ...(signal ? [{ signal }] : [])).catch(
    (error: unknown) => plain.destroy(error as Error),
  );
  return plain;
}

/** Reads a backup's archive to the end, discarding it: throws unless every check passes. */
export async function readThrough(archive: Readable): Promise<number> {
  let bytes = 0;
  await pipeline(
    archive,
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        done();
      },
    }),
  );
  return bytes;
}

export function createRestorePort(wiring: BackupWiring): Restores {
  const { sql } = wiring;
  return {
    next: (instanceId) => nextRestore(sql, instanceId),
    started: (id, safetyBackupId) => markRestoreStarted(sql, id, safetyBackupId),
    replaced: (id) => markReplaced(sql, id),
    openVerified: async (backupId, signal) => {
      await readThrough(await openArchive(wiring, backupId, signal)).catch((error: unknown) => {
        throw new TerminalError("BackupCorrupt", `backup ${backupId} failed verification: ${(error as Error).message}`, { cause: error });
      });
      return openArchive(wiring, backupId, signal);
    },
    finished: async (id, error) => {
      await markRestoreFinished(sql, id, error);
      wiring.metrics?.restores.inc({ result: error === null ? "success" : "failure" });
    },
  };
}
