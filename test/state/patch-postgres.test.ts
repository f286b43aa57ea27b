/**
 * The postinstall guard of postgres.js (src/state/patch-postgres.mjs) is in place in every build
 * of it: without it a connection dropped with a write pending ends the whole process.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { expect, test } from "vitest";

test("postgres.js nextWrite is guarded against a closed socket (porsager/postgres#1154)", () => {
  for (const variant of ["src", "cjs/src", "cf/src"]) {
    const text = readFileSync(join("node_modules", "postgres", variant, "connection.js"), "utf8");
    expect(text, variant).toContain("/* mindroom: guarded nextWrite (porsager/postgres#1154) */");
    expect(text, variant).toMatch(/function nextWrite\(fn\) \{\n.*\n {4}if \(!socket\) \{\n {6}chunk = nextWriteTimer = null\n {6}return false/);
  }
});
