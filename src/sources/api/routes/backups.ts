/**
 * Backups through the API: list and request an instance's backups, read one, download its
 * archive (decrypted and verified as it streams; a mismatch cuts the download short rather than
 * deliver wrong bytes), and restore it into its instance (a journaled controller operation,
 * preceded by a safety backup).
 */
import { z } from "zod";

import { findAccountBackup, instanceBackups } from "../../../state/api-reads.ts";
import { requestManualBackup, requestRestoreOf } from "../../../state/api-writes.ts";
import type { BackupRow } from "../../../state/backups.ts";
import { ApiError, conflict, errorResponses, notFound } from "../errors.ts";
import { authenticated } from "../guards.ts";
import { backupListSchema, backupSchema, idempotencyHeaders, idParams, restoreSchema } from "../schemas.ts";
import type { ApiApp, ApiContext } from "../server.ts";
import { backupJson, desiredPhase } from "../views.ts";
import { loadInstance } from "./instances.ts";

const tags = ["backups"];
/** Marks the one binary response; the document builder (openapi.ts) gives it its media type. */
export const BINARY_DOWNLOAD = "The archive: a tar.gz (application/gzip), decrypted and verified";
const PAGE = 100;

export function registerBackupRoutes(app: ApiApp, ctx: ApiContext): void {
  app.get("/v1/instances/:id/backups", {
    config: { scope: "backups:read" },
    schema: { tags, summary: `An instance's backups, newest first (the latest ${PAGE})`, params: idParams, response: { 200: backupListSchema, ...errorResponses() } },
  }, async (request) => {
    const view = await loadInstance(ctx, authenticated(request).accountId, request.params.id);
    const page = await ctx.db("list backups", () => instanceBackups(ctx.sql, view.id, PAGE));
    return { object: "list" as const, data: page.items.map(backupJson), has_more: page.hasMore };
  });

  app.post("/v1/instances/:id/backups", {
    config: { scope: "backups:write" },
    schema: { tags, summary: "Request a manual backup of every component (within the daily limit)", params: idParams, headers: idempotencyHeaders, response: { 202: backupSchema, ...errorResponses() } },
  }, async (request, reply) => {
    const caller = authenticated(request);
    const view = await loadInstance(ctx, caller.accountId, request.params.id);
    if (desiredPhase(view.subscription, view.desiredState, ctx.clock()).phase === "deprovisioned" || view.status === "deprovisioned") {
      throw conflict("instance_deprovisioned", `Instance ${view.subdomain} is torn down: there is nothing to back up`);
    }
    const perDay = ctx.deps.manualBackupsPerDay;
    const id = await ctx.db("request backup", () => requestManualBackup(ctx.sql, caller.actor, caller.accountId, view.id, perDay));
    if (!id) throw new ApiError(429, "rate_limit_error", "backup_limit_reached", `At most ${perDay} manual backups per instance per day: try again tomorrow`, { retryAfterSeconds: 3600 });
    return reply.code(202).send(backupJson(await loadBackup(ctx, caller.accountId, id)));
  });

  app.get("/v1/backups/:id", {
    config: { scope: "backups:read" },
    schema: { tags, summary: "Retrieve a backup", params: idParams, response: { 200: backupSchema, ...errorResponses() } },
  }, async (request) => backupJson(await loadBackup(ctx, authenticated(request).accountId, request.params.id)));

  app.get("/v1/backups/:id/download", {
    config: { scope: "backups:read" },
    schema: {
      tags,
      summary: "Download a completed backup: the decrypted tar.gz, verified against its recorded sha256 as it streams",
      params: idParams,
      response: { 200: z.any().describe(BINARY_DOWNLOAD), ...errorResponses() },
    },
  }, async (request, reply) => {
    const backup = await loadBackup(ctx, authenticated(request).accountId, request.params.id);
    if (backup.status !== "completed") throw conflict("backup_not_completed", `Backup ${backup.id} is ${backup.status}: only a completed backup can be downloaded`);
    const abort = new AbortController();
    request.raw.once("close", () => abort.abort());
    const archive = await ctx.db("open backup", () => ctx.deps.openArchive(backup.id, abort.signal));
    void reply.header("content-type", "application/gzip");
    void reply.header("content-disposition", `attachment; filename="${archiveName(backup)}"`);
    return reply.send(archive);
  });

  app.post("/v1/backups/:id/restore", {
    config: { scope: "backups:write" },
    schema: { tags, summary: "Restore a completed backup into its instance (a safety backup is taken first)", params: idParams, headers: idempotencyHeaders, response: { 202: restoreSchema, ...errorResponses() } },
  }, async (request, reply) => {
    const caller = authenticated(request);
    const backup = await loadBackup(ctx, caller.accountId, request.params.id);
    if (backup.status !== "completed") throw conflict("backup_not_completed", `Backup ${backup.id} is ${backup.status}: only a completed backup can be restored`);
    const view = await loadInstance(ctx, caller.accountId, backup.instanceId);
    if (view.status === "deprovisioned") throw conflict("instance_deprovisioned", `Instance ${view.subdomain} is torn down: there is nothing to restore into`);
    const id = await ctx.db("request restore", () => requestRestoreOf(ctx.sql, caller.actor, caller.accountId, view.id, backup.id));
    return reply.code(202).send({ id, object: "restore" as const, backup_id: backup.id, instance_id: view.id, status: "requested" });
  });
}

async function loadBackup(ctx: ApiContext, accountId: string, id: string): Promise<BackupRow> {
  const backup = await ctx.db("find backup", () => findAccountBackup(ctx.sql, accountId, id));
  if (!backup) throw notFound("backup", id);
  return backup;
}

function archiveName(backup: BackupRow): string {
  const day = (backup.completedAt ?? backup.createdAt).toISOString().slice(0, 10);
  return `${backup.subdomain}-${backup.component ?? "all"}-${day}-${backup.id.slice(0, 8)}.tar.gz`;
}
