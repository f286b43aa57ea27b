#!/usr/bin/env node
/**
 * npm `postinstall`: guards postgres.js 3.4.x against a process crash it cannot catch.
 *
 * postgres.js batches small writes behind `setImmediate(nextWrite)`. When the connection closes
 * before that immediate runs (a database restart, a dropped connection), `nextWrite` calls
 * `socket.write` on a null socket and throws from the immediate: an uncaught TypeError that ends
 * the process (porsager/postgres#1066, #1154, #1208; fixes proposed in #1168, #1176, #1209, not
 * released in 3.4.x). Teardown also clears the immediate without resetting it, so the connection
 * could never flush again after a reconnect. This patch applies the proposed guard: a write with
 * no socket is dropped (the closed connection has already rejected its query with
 * CONNECTION_CLOSED), and teardown resets the write state. Idempotent; it changes nothing when
 * the code it patches is not there (another postgres.js version), and says so.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const MARK = "/* mindroom: guarded nextWrite (porsager/postgres#1154) */";
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "node_modules", "postgres");
let patched = 0;
for (const variant of ["src", "cjs/src", "cf/src"]) {
  const file = join(root, variant, "connection.js");
  if (!existsSync(file)) continue;
  const text = readFileSync(file, "utf8");
  if (text.includes(MARK)) continue;
  const guarded = text
    .replace("  function nextWrite(fn) {\n    const x = socket.write(chunk, fn)", `  function nextWrite(fn) {\n    ${MARK}\n    if (!socket) {\n      chunk = nextWriteTimer = null\n      return false\n    }\n    const x = socket.write(chunk, fn)`)
    .replaceAll("    clearImmediate(nextWriteTimer)\n", "    clearImmediate(nextWriteTimer)\n    chunk = nextWriteTimer = null\n");
  if (!guarded.includes(MARK) || guarded.split("chunk = nextWriteTimer = null").length < 4) {
    process.stderr.write(`patch-postgres: ${file} does not have the expected code; left unchanged\n`);
    continue;
  }
  writeFileSync(file, guarded);
  patched += 1;
}
if (patched > 0) process.stdout.write(`patch-postgres: guarded nextWrite in ${patched} postgres.js build(s)\n`);
