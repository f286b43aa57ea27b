/**
 * Size and sha256 of bytes as they stream past: `measureStream` for writes (what a store records),
 * `verifyStream` for reads (the recorded values checked on every read, DESIGN section 10).
 */
import { createHash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

import { TerminalError } from "../../errors.ts";

export interface Measured {
  readonly sizeBytes: number;
  readonly sha256: string;
}

/** A pass-through that counts and hashes; `result()` is valid once the stream has ended. */
export function measureStream(): { stream: Transform; result(): Measured } {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  let sha256: string | undefined;
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      sha256 = hash.digest("hex");
      callback();
    },
  });
  return {
    stream,
    result() {
      if (sha256 === undefined) throw new Error("measureStream: result() read before the stream ended");
      return { sizeBytes, sha256 };
    },
  };
}

/**
 * Passes bytes through unchanged and errors at the end (TerminalError `backup_corrupt`) unless exactly
 * `expectedSize` bytes with sha256 `expectedSha256` went through. The last bytes are held back until
 * the check passes, so a consumer that waits for a clean end never sees a mismatching object complete.
 */
export function verifyStream(expectedSha256: string, expectedSize: number): Transform {
  const hash = createHash("sha256");
  let sizeBytes = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      hash.update(chunk);
      sizeBytes += chunk.length;
      if (sizeBytes > expectedSize) {
        callback(new TerminalError("backup_corrupt", `backup is larger than the recorded ${expectedSize} bytes`));
        return;
      }
      const previous = held;
      held = chunk;
      callback(null, previous);
    },
    flush(callback: TransformCallback) {
      const sha256 = hash.digest("hex");
      if (sizeBytes !== expectedSize) {
        callback(new TerminalError("backup_corrupt", `backup is ${sizeBytes} bytes, the recorded size is ${expectedSize}`));
      } else if (sha256 !== expectedSha256.toLowerCase()) {
        callback(new TerminalError("backup_corrupt", `backup sha256 is ${sha256}, the recorded sha256 is ${expectedSha256}`));
      } else {
        callback(null, held);
      }
    },
  });
}
