/**
 * The backup store: where encrypted backup archives live (DESIGN section 10). One narrow interface,
 * three implementations chosen by BACKUP_STORE: `local` (DATA_DIR/backups), `s3` (any
 * S3-compatible service, streaming multipart) and `supabase` (Supabase Storage).
 *
 * The store moves opaque bytes: callers encrypt before `put` and decrypt after `get`
 * (crypto.ts), so nothing a store holds is readable without MASTER_KEY.
 */
import type { Readable } from "node:stream";

export type BackupStoreKind = "local" | "s3" | "supabase";

/** What `put` stored: the location recorded on the row, and the size and sha256 of the stored bytes. */
export interface StoredObject {
  /** `local:<key>`, `s3://<bucket>/<key>` or `supabase://<bucket>/<key>`; what `get`/`delete` take. */
  readonly location: string;
  readonly sizeBytes: number;
  /** Hex sha256 of exactly the bytes stored (the ciphertext). */
  readonly sha256: string;
}

export interface BackupStore {
  /** The `store` label of the backup metrics. */
  readonly kind: BackupStoreKind;
  /**
   * Streams `body` into the object `key` (a relative path such as `<instance>/<backup>-<component>.tar.gz.enc`).
   * Resolves only when the object is complete and durable. Never holds the whole archive in
   * memory or on local disk (except the local store's own file). On failure or abort it rejects
   * and leaves no object at `key` and no open multipart upload. Not idempotent: callers use a new
   * key per backup.
   */
  put(key: string, body: Readable, signal?: AbortSignal): Promise<StoredObject>;
  /** The stored bytes of `location`, streamed. Rejects when the object does not exist. */
  get(location: string, signal?: AbortSignal): Promise<Readable>;
  /** Deletes `location`. Idempotent: a missing object is success. */
  delete(location: string, signal?: AbortSignal): Promise<void>;
  /**
   * Housekeeping at start-up: removes partial objects and aborts multipart uploads older than
   * `olderThanMs` (left by a process that was killed). Returns how many it cleaned.
   */
  cleanupStale(olderThanMs: number, signal?: AbortSignal): Promise<number>;
}
