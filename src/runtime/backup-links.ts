/**
 * Time-limited download links for backups: `GET /backups/<id>/download?expires=<unix s>&sig=<hex>`,
 * signed with an HMAC key derived from MASTER_KEY (never the master key itself). The daemon
 * streams the decrypted, verified archive; an expired or altered link gets 403 and reveals
 * nothing about the backup.
 */
import { createHmac, hkdfSync, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";

import type { BackupStore } from "../drivers/backup-store/types.ts";
import { type Handler, sendJson } from "../http.ts";
import type { Logger } from "../logger.ts";
import { openArchive } from "./backups.ts";

export const DOWNLOAD_PREFIX = "/backups/";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Links last at most a week. */
export const MAX_LINK_TTL_MS = 7 * 86_400_000;

function linkKey(masterKey: string): Buffer {
  return Buffer.from(hkdfSync("sha256", Buffer.from(masterKey, "utf8"), Buffer.alloc(0), "mindroom/backup-links/v1", 32));
}

function signature(masterKey: string, backupId: string, expires: number): Buffer {
  return createHmac("sha256", linkKey(masterKey)).update(`${backupId}.${expires}`).digest();
}

/** The path and query of a link valid until `now + ttlMs`. */
export function signDownloadPath(masterKey: string, backupId: string, now: Date, ttlMs: number): { path: string; expiresAt: Date } {
  const ttl = Math.min(Math.max(ttlMs, 1000), MAX_LINK_TTL_MS);
  const expires = Math.floor((now.getTime() + ttl) / 1000);
  const sig = signature(masterKey, backupId, expires).toString("hex");
  return { path: `${DOWNLOAD_PREFIX}${backupId}/download?expires=${expires}&sig=${sig}`, expiresAt: new Date(expires * 1000) };
}

/** The backup id of a valid, unexpired link; undefined for anything else. */
export function verifyDownloadUrl(masterKey: string, url: string, now: Date): string | undefined {
  const parsed = new URL(url, "http://localhost");
  const match = /^\/backups\/([^/]+)\/download$/.exec(parsed.pathname);
  const id = match?.[1];
  const expires = Number(parsed.searchParams.get("expires"));
  const sig = Buffer.from(parsed.searchParams.get("sig") ?? "", "hex");
  if (!id || !UUID.test(id) || !Number.isSafeInteger(expires) || expires * 1000 <= now.getTime()) return undefined;
  const expected = signature(masterKey, id, expires);
  return sig.length === expected.length && timingSafeEqual(sig, expected) ? id : undefined;
}

export interface DownloadDeps {
  readonly sql: Parameters<typeof openArchive>[0]["sql"];
  readonly store: BackupStore;
  readonly masterKey: string;
  readonly now: () => Date;
  readonly logger: Pick<Logger, "warn">;
}

/** The `GET /backups/` handler. Headers go out only once the archive opened. */
export function downloadHandler(deps: DownloadDeps): Handler {
  return async (req: IncomingMessage, res: ServerResponse) => {
    const id = verifyDownloadUrl(deps.masterKey, req.url ?? "", deps.now());
    if (!id) return sendJson(res, 403, { error: "this download link is invalid or has expired; ask for a new one" });
    let archive;
    try {
      archive = await openArchive(deps, id);
    } catch (error) {
      deps.logger.warn({ backup: id, err: error }, "backup download refused");
      return sendJson(res, 404, { error: "this backup cannot be downloaded (it expired, failed or was removed)" });
    }
    res.writeHead(200, { "content-type": "application/gzip", "content-disposition": `attachment; filename="backup-${id}.tar.gz"`, "cache-control": "no-store" });
    // A failed check mid-stream aborts the response: the client sees a truncated transfer, never bad data as complete.
    await pipeline(archive, res).catch((error: unknown) => {
      deps.logger.warn({ backup: id, err: error }, "backup download aborted");
      res.destroy();
    });
  };
}
