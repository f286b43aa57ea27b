/**
 * Backups: bookkeeping in `instance_backups`, bytes in a local directory under DATA_DIR (the
 * default store). A backup is recorded `completed`, with its sha256 and size, only after every
 * byte is on disk and renamed into place; a partial file never looks like a backup.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { PassThrough } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { Sql } from "postgres";

import type { BackupRecord, Backups, BackupSink, Component } from "../reconciler/types.ts";

const RETENTION_DAYS = 30;

export function createBackups(sql: Sql, root: string): Backups {
  return {
    begin: async (instanceId, component, type) => {
      const [row] = await sql<{ id: string }[]>`
        insert into public.instance_backups (instance_id, backup_type, status, component, started_at, expires_at)
        values (${instanceId}, ${type}, 'in_progress', ${component}, now(), now() + make_interval(days => ${RETENTION_DAYS}))
        returning id`;
      return { id: row!.id, component };
    },
    open: (instanceId, record) => openLocalSink(sql, root, instanceId, record),
    fail: async (record, error) => {
      await sql`update public.instance_backups set status = 'failed', error = ${error}, completed_at = now() where id = ${record.id}`;
    },
    completedTeardownBackups: async (instanceId, since) => {
      const rows = await sql<{ component: Component }[]>`
        select distinct component from public.instance_backups
        where instance_id = ${instanceId} and backup_type = 'pre_deprovision' and status = 'completed'
          and component is not null and (${since}::timestamptz is null or completed_at >= ${since})`;
      return new Set(rows.map((row) => row.component));
    },
  };
}

async function openLocalSink(sql: Sql, root: string, instanceId: string, record: BackupRecord): Promise<BackupSink> {
  const final = join(root, instanceId, `${record.id}-${record.component}.tar.gz`);
  const partial = `${final}.partial`;
  await mkdir(dirname(final), { recursive: true, mode: 0o700 });
  const hash = createHash("sha256");
  let size = 0;
  const stream = new PassThrough();
  stream.on("data", (chunk: Buffer) => {
    hash.update(chunk);
    size += chunk.length;
  });
  const written = pipeline(stream, createWriteStream(partial, { mode: 0o600 }));
  written.catch(() => {});
  return {
    stream,
    commit: async () => {
      if (!stream.writableEnded) stream.end();
      await written;
      await rename(partial, final);
      const result = { location: `local:${relative(root, final)}`, sizeBytes: size, sha256: hash.digest("hex") };
      await sql`
        update public.instance_backups
        set status = 'completed', location = ${result.location}, size_bytes = ${result.sizeBytes},
            sha256 = ${result.sha256}, completed_at = now()
        where id = ${record.id}`;
      return result;
    },
    abort: async () => {
      stream.destroy();
      await rm(partial, { force: true });
    },
  };
}
