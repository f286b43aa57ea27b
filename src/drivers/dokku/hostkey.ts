/**
 * Host-key pinning helpers. A host key is stored as an OpenSSH public-key line
 * (`ssh-ed25519 AAAA… [comment]`); comparisons use the raw key blob, and messages use OpenSSH's
 * `SHA256:<base64 without padding>` fingerprint.
 */
import { createHash } from "node:crypto";

import { TerminalError } from "../../errors.ts";

/** The raw key blob of an OpenSSH public-key line. */
export function keyBlobOf(line: string): Buffer {
  const [, base64] = line.trim().split(/\s+/);
  const blob = base64 ? Buffer.from(base64, "base64") : Buffer.alloc(0);
  if (blob.length < 8) throw new TerminalError("InvalidHostKey", "pinned host key is not an OpenSSH public-key line");
  return blob;
}

/** OpenSSH's fingerprint: `SHA256:` + unpadded base64 of the blob's SHA-256. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The key type is the first SSH string (uint32 length + bytes) inside the blob. */
function keyTypeOf(blob: Buffer): string {
  const length = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + length).toString("latin1");
}

/** The OpenSSH line for a raw blob received during a handshake. */
export function lineOf(blob: Buffer): string {
  return `${keyTypeOf(blob)} ${blob.toString("base64")}`;
}

export function hostKeyMismatch(hostName: string, expected: Buffer, presented: Buffer): TerminalError {
  return new TerminalError(
    "HostKeyMismatch",
    `host key of ${hostName} changed: pinned ${fingerprint(expected)}, presented ${fingerprint(presented)}; ` +
      "refusing to connect (update dokku_hosts.host_key only if the change is expected)",
  );
}
