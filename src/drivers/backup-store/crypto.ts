/**
 * Encryption at rest for backup archives: AES-256-GCM in the STREAM construction (Hoang, Reyhanitabar,
 * Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", 2015),
 * the chunked format age and Tink's streaming AEAD use. Built on node:crypto only.
 *
 * Format, version 1:
 *
 *     header  = magic "MRBE" | version u8 = 1 | keyIdLength u8 | keyId (ASCII hex)
 *               | salt (32 random bytes) | noncePrefix (7 random bytes) | chunkSize u32 BE
 *     records = for i = 0..n-1: AES-256-GCM(objectKey, nonce_i, chunk_i, aad = header) | tag (16)
 *     nonce_i = noncePrefix | i as u32 BE | 0x01 on the last record, else 0x00
 *
 * Every record holds `chunkSize` plaintext bytes except the last, which holds 0..chunkSize and is the
 * only one sealed with the last flag; an empty archive is one empty last record. So a dropped record
 * (counter mismatch), reordered records (counter mismatch), a truncation at a record boundary (the
 * new last record was not sealed as last), bytes after the last record, a changed header (AAD) and a
 * changed byte anywhere (tag) all fail authentication.
 *
 * Keys: `instanceKey = HKDF-SHA256(MASTER_KEY, info = "mindroom/backup/v1/instance/<id>")` and
 * `objectKey = HKDF-SHA256(instanceKey, salt, "mindroom/backup/v1/object")`: each object has its own key,
 * so the random 56-bit nonce prefix never has to be unique across objects. `keyId` names the master
 * key without revealing it (the first 8 bytes of an HKDF output, hex); it is stored in the header and
 * on the backup row, so after a key rotation an old backup is refused with an error that names the
 * key it needs instead of decrypting to garbage.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

import { TerminalError } from "../../errors.ts";
import { ByteQueue } from "./byte-queue.ts";

export { measureStream, verifyStream } from "./digest.ts";

const MAGIC = Buffer.from("MRBE", "ascii");
const VERSION = 1;
const SALT_BYTES = 32;
const NONCE_PREFIX_BYTES = 7;
const TAG_BYTES = 16;
/** Plaintext bytes per record: age's choice; the per-record overhead is 16 bytes (0.02%). */
export const CHUNK_SIZE = 64 * 1024;
/** Refuse chunk sizes in a header above this, so a corrupt header cannot make us buffer gigabytes. */
const MAX_CHUNK_SIZE = 16 * 1024 * 1024;
const MAX_RECORDS = 2 ** 32;

/** Identifies `masterKey` (16 hex characters) without revealing anything usable about it. */
export function backupKeyId(masterKey: string): string {
  return Buffer.from(hkdfSync("sha256", Buffer.from(masterKey, "utf8"), Buffer.alloc(0), "mindroom/backup/v1/key-id", 8)).toString("hex");
}

function objectKey(masterKey: string, instanceId: string, salt: Buffer): Buffer {
  const instanceKey = Buffer.from(hkdfSync("sha256", Buffer.from(masterKey, "utf8"), Buffer.alloc(0), `mindroom/backup/v1/instance/${instanceId}`, 32));
  return Buffer.from(hkdfSync("sha256", instanceKey, salt, "mindroom/backup/v1/object", 32));
}

interface Header {
  readonly bytes: Buffer;
  readonly keyId: string;
  readonly salt: Buffer;
  readonly noncePrefix: Buffer;
  readonly chunkSize: number;
}

function encodeHeader(keyId: string, salt: Buffer, noncePrefix: Buffer, chunkSize: number): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(chunkSize);
  return Buffer.concat([MAGIC, Buffer.from([VERSION, keyId.length]), Buffer.from(keyId, "ascii"), salt, noncePrefix, size]);
}

/** The header at the start of `queue`, or undefined while more bytes are needed. Throws on a foreign format. */
function decodeHeader(queue: ByteQueue): Header | undefined {
  if (queue.length < MAGIC.length + 2) return undefined;
  const fixed = queue.peek(MAGIC.length + 2);
  if (!fixed.subarray(0, MAGIC.length).equals(MAGIC)) throw corrupt("not an encrypted MindRoom backup (unknown header)");
  if (fixed[MAGIC.length] !== VERSION) throw corrupt(`unsupported backup encryption format version ${fixed[MAGIC.length]}`);
  const keyIdLength = fixed[MAGIC.length + 1] ?? 0;
  const total = MAGIC.length + 2 + keyIdLength + SALT_BYTES + NONCE_PREFIX_BYTES + 4;
  if (queue.length < total) return undefined;
  const bytes = queue.take(total);
  let offset = MAGIC.length + 2;
  const field = (length: number): Buffer => bytes.subarray(offset, (offset += length));
  const keyId = field(keyIdLength).toString("ascii");
  const salt = field(SALT_BYTES);
  const noncePrefix = field(NONCE_PREFIX_BYTES);
  const chunkSize = field(4).readUInt32BE();
  if (chunkSize === 0 || chunkSize > MAX_CHUNK_SIZE) throw corrupt(`backup header has an invalid chunk size ${chunkSize}`);
  return { bytes, keyId, salt, noncePrefix, chunkSize };
}

function nonce(prefix: Buffer, counter: number, last: boolean): Buffer {
  if (counter >= MAX_RECORDS) throw new Error("backup too large for one encrypted stream (2^32 records)");
  const value = Buffer.alloc(12);
  prefix.copy(value, 0);
  value.writeUInt32BE(counter, NONCE_PREFIX_BYTES);
  value[11] = last ? 1 : 0;
  return value;
}

function corrupt(message: string, cause?: unknown): TerminalError {
  return new TerminalError("backup_corrupt", message, cause === undefined ? undefined : { cause });
}

/**
 * Encrypts a plaintext stream for `instanceId`. Record `keyId` with the backup: `decryptStream` needs it.
 * The returned Transform buffers at most one chunk (64 KiB) plus what its consumer has not read.
 */
export function encryptStream(masterKey: string, instanceId: string): { keyId: string; stream: Transform } {
  const keyId = backupKeyId(masterKey);
  const salt = randomBytes(SALT_BYTES);
  const noncePrefix = randomBytes(NONCE_PREFIX_BYTES);
  const header = encodeHeader(keyId, salt, noncePrefix, CHUNK_SIZE);
  const key = objectKey(masterKey, instanceId, salt);
  const pending = new ByteQueue();
  let counter = 0;
  let headerSent = false;
  const sendHeader = (stream: Transform): void => {
    if (!headerSent) stream.push(header);
    headerSent = true;
  };
  const seal = (chunk: Buffer, last: boolean): Buffer => {
    const cipher = createCipheriv("aes-256-gcm", key, nonce(noncePrefix, counter++, last));
    cipher.setAAD(header);
    return Buffer.concat([cipher.update(chunk), cipher.final(), cipher.getAuthTag()]);
  };
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        sendHeader(this);
        pending.push(chunk);
        // Strictly more than a chunk: only the end of the input says which record is the last.
        while (pending.length > CHUNK_SIZE) this.push(seal(pending.take(CHUNK_SIZE), false));
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        sendHeader(this);
        callback(null, seal(pending.take(pending.length), true));
      } catch (error) {
        callback(error as Error);
      }
    },
  });
  return { keyId, stream };
}

/**
 * Decrypts what `encryptStream` produced. Errors (TerminalError) when the object was encrypted under
 * another key id than `keyId`, when `masterKey` is not that key, and on any tampering, reordering or
 * truncation. Output is released one authenticated record at a time: a consumer that must not act
 * on unauthenticated data (a restore) still has to wait for the stream to end without error.
 */
export function decryptStream(masterKey: string, instanceId: string, keyId: string): Transform {
  const ownKeyId = backupKeyId(masterKey);
  if (ownKeyId !== keyId) {
    throw new TerminalError("backup_key_mismatch", `backup was encrypted under key id ${keyId}, but MASTER_KEY has key id ${ownKeyId}; set the MASTER_KEY it was taken with`);
  }
  const pending = new ByteQueue();
  let header: Header | undefined;
  let key: Buffer | undefined;
  let counter = 0;
  const open = (record: Buffer, last: boolean): Buffer => {
    if (!header || !key) throw corrupt("backup is truncated inside its header");
    if (record.length < TAG_BYTES) throw corrupt("backup is truncated (incomplete record)");
    const decipher = createDecipheriv("aes-256-gcm", key, nonce(header.noncePrefix, counter++, last));
    decipher.setAAD(header.bytes);
    decipher.setAuthTag(record.subarray(record.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(record.subarray(0, record.length - TAG_BYTES)), decipher.final()]);
    } catch (error) {
      throw corrupt(`backup failed authentication at record ${counter - 1}: it was altered, reordered or truncated`, error);
    }
  };
  const readHeader = (): void => {
    if (header) return;
    header = decodeHeader(pending);
    if (!header) return;
    if (header.keyId !== keyId) {
      throw new TerminalError("backup_key_mismatch", `backup header names key id ${header.keyId}, but the backup row records ${keyId}`);
    }
    key = objectKey(masterKey, instanceId, header.salt);
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        pending.push(chunk);
        readHeader();
        const recordSize = header ? header.chunkSize + TAG_BYTES : Infinity;
        while (pending.length > recordSize) this.push(open(pending.take(recordSize), false));
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        readHeader();
        if (!header) throw corrupt("backup is truncated inside its header");
        callback(null, open(pending.take(pending.length), true));
      } catch (error) {
        callback(error as Error);
      }
    },
  });
}
