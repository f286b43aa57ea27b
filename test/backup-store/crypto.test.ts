import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { gzipSync } from "node:zlib";

import fc from "fast-check";
import { describe, expect, test } from "vitest";

import { backupKeyId, CHUNK_SIZE, decryptStream, encryptStream, verifyStream } from "../../src/drivers/backup-store/crypto.ts";

const MASTER = "m".repeat(40);
const OTHER_MASTER = "o".repeat(40);
const INSTANCE = "inst-1";
const HEADER_BYTES = 4 + 2 + 16 + 32 + 7 + 4;
const RECORD = CHUNK_SIZE + 16;

async function collect(source: Readable | Buffer[], ...transforms: NodeJS.ReadWriteStream[]): Promise<Buffer> {
  const out: Buffer[] = [];
  const run = pipeline as (...streams: unknown[]) => Promise<void>;
  await run(Array.isArray(source) ? Readable.from(source) : source, ...transforms, async (chunks: AsyncIterable<Buffer>) => {
    for await (const chunk of chunks) out.push(chunk);
  });
  return Buffer.concat(out);
}

async function encrypt(plain: Buffer, pieces: Buffer[] = [plain]): Promise<{ keyId: string; cipher: Buffer }> {
  const { keyId, stream } = encryptStream(MASTER, INSTANCE);
  expect(plain.equals(Buffer.concat(pieces))).toBe(true);
  return { keyId, cipher: await collect(pieces, stream) };
}

const decrypt = (cipher: Buffer, keyId: string, master = MASTER, instance = INSTANCE): Promise<Buffer> =>
  collect([cipher], decryptStream(master, instance, keyId));

/** Splits `data` at the given cut points (fractions), as a stream would hand it over. */
function split(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * data.length)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let start = 0;
  for (const point of [...points, data.length]) {
    pieces.push(data.subarray(start, point));
    start = point;
  }
  return pieces;
}

describe("backup encryption", () => {
  test("round trip over random sizes and chunkings is byte-exact", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 3 * CHUNK_SIZE + 10 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
        fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
        async (size, plainCuts, cipherCuts) => {
          const plain = randomBytes(size);
          const { keyId, cipher } = await encrypt(plain, split(plain, plainCuts));
          const back = await collect(split(cipher, cipherCuts), decryptStream(MASTER, INSTANCE, keyId));
          expect(back.equals(plain)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  test("exact multiples of the chunk size and the empty archive round-trip", async () => {
    for (const size of [0, CHUNK_SIZE, 2 * CHUNK_SIZE]) {
      const plain = randomBytes(size);
      const { keyId, cipher } = await encrypt(plain);
      expect(cipher.length, `size ${size}`).toBe(HEADER_BYTES + (Math.floor(size / CHUNK_SIZE) + (size % CHUNK_SIZE === 0 && size > 0 ? 0 : 1)) * 16 + size);
      expect((await decrypt(cipher, keyId)).equals(plain)).toBe(true);
    }
  });

  test("the ciphertext is not gzip and does not contain the plaintext", async () => {
    const text = Buffer.from("customer-secret-".repeat(20_000));
    const gz = gzipSync(text);
    const { cipher } = await encrypt(gz);
    expect(cipher.subarray(0, 2).equals(Buffer.from([0x1f, 0x8b]))).toBe(false);
    expect(cipher.includes(gz.subarray(0, 64))).toBe(false);
    const plainCipher = (await encrypt(text)).cipher;
    expect(plainCipher.includes(Buffer.from("customer-secret-"))).toBe(false);
    // Two encryptions of the same data differ (random salt and nonce prefix).
    expect((await encrypt(text)).cipher.equals(plainCipher)).toBe(false);
  });

  const plain = randomBytes(3 * CHUNK_SIZE + 100);
  const attacks: Record<string, { reason: string; mutate: (cipher: Buffer) => Buffer }> = {
    "flipped bit in a record": { reason: "GCM tag covers every byte", mutate: (c) => flip(c, HEADER_BYTES + RECORD + 5) },
    "flipped bit in a tag": { reason: "the tag itself is checked", mutate: (c) => flip(c, HEADER_BYTES + RECORD - 1) },
    "flipped bit in the salt": { reason: "salt changes the object key", mutate: (c) => flip(c, 4 + 2 + 16 + 3) },
    "changed chunk size in the header": { reason: "header is AAD of every record", mutate: (c) => flip(c, HEADER_BYTES - 1) },
    "truncated at a record boundary": { reason: "the new last record was not sealed as last", mutate: (c) => c.subarray(0, HEADER_BYTES + 2 * RECORD) },
    "truncated inside a record": { reason: "tag no longer matches", mutate: (c) => c.subarray(0, c.length - 7) },
    "last record dropped entirely": { reason: "same as truncation", mutate: (c) => c.subarray(0, HEADER_BYTES + 3 * RECORD) },
    "records 1 and 2 swapped": {
      reason: "counter is part of the nonce",
      mutate: (c) => Buffer.concat([c.subarray(0, HEADER_BYTES + RECORD), c.subarray(HEADER_BYTES + 2 * RECORD, HEADER_BYTES + 3 * RECORD), c.subarray(HEADER_BYTES + RECORD, HEADER_BYTES + 2 * RECORD), c.subarray(HEADER_BYTES + 3 * RECORD)]),
    },
    "bytes appended after the last record": { reason: "the last record is then decrypted as a middle record", mutate: (c) => Buffer.concat([c, randomBytes(40)]) },
    "only the header": { reason: "an empty stream has an empty last record", mutate: (c) => c.subarray(0, HEADER_BYTES) },
    "truncated inside the header": { reason: "no header, no data", mutate: (c) => c.subarray(0, 20) },
    "plain gzip instead of a backup": { reason: "magic check", mutate: () => gzipSync(Buffer.from("hello")) },
  };
  for (const [name, tc] of Object.entries(attacks)) {
    test(`detects: ${name}`, async () => {
      const { keyId, cipher } = await encrypt(plain);
      await expect(decrypt(tc.mutate(Buffer.from(cipher)), keyId), tc.reason).rejects.toMatchObject({ name: "TerminalError", reason: "backup_corrupt" });
    });
  }

  test("a wrong master key is refused up front, naming both key ids", async () => {
    const { keyId, cipher } = await encrypt(plain);
    expect(keyId).toBe(backupKeyId(MASTER));
    expect(() => decryptStream(OTHER_MASTER, INSTANCE, keyId)).toThrow(new RegExp(`key id ${keyId}.*MASTER_KEY has key id ${backupKeyId(OTHER_MASTER)}`));
    // Even told the other key's id, the header names the real one.
    await expect(decrypt(cipher, backupKeyId(OTHER_MASTER), OTHER_MASTER)).rejects.toThrow(new RegExp(`header names key id ${keyId}`));
  });

  test("another instance's key does not decrypt", async () => {
    const { keyId, cipher } = await encrypt(plain);
    await expect(decrypt(cipher, keyId, MASTER, "inst-2")).rejects.toMatchObject({ reason: "backup_corrupt" });
  });

  test("key ids are stable, short and distinct per master key", () => {
    expect(backupKeyId(MASTER)).toMatch(/^[0-9a-f]{16}$/);
    expect(backupKeyId(MASTER)).toBe(backupKeyId(MASTER));
    expect(backupKeyId(MASTER)).not.toBe(backupKeyId(OTHER_MASTER));
  });
});

describe("verifyStream", () => {
  const data = randomBytes(200_000);
  const sha = createHash("sha256").update(data).digest("hex");
  test("passes matching bytes through unchanged", async () => {
    expect((await collect(split(data, [0.3, 0.6]), verifyStream(sha, data.length))).equals(data)).toBe(true);
  });
  test("rejects a changed byte, a short and a long object", async () => {
    await expect(collect([flip(Buffer.from(data), 10)], verifyStream(sha, data.length))).rejects.toThrow(/sha256/);
    await expect(collect([data.subarray(1)], verifyStream(sha, data.length))).rejects.toThrow(/bytes, the recorded size/);
    await expect(collect([data, Buffer.from("x")], verifyStream(sha, data.length))).rejects.toThrow(/larger than/);
  });
});

function flip(buffer: Buffer, index: number): Buffer {
  buffer[index] = (buffer[index] ?? 0) ^ 0x01;
  return buffer;
}
