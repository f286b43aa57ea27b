/** bench/lib/fsync-probe.ts: the disk's flush latency during a benchmark round. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { expect, test } from "vitest";

import { startFsyncProbe, summarizeFlushes } from "../../bench/lib/fsync-probe.ts";

test("times real flushes of a file in the directory, and leaves nothing there", async () => {
  const dir = await mkdtemp(join(tmpdir(), "fsync-probe-test-"));
  try {
    const probe = await startFsyncProbe(dir, 10);
    await sleep(300);
    expect(await readdir(dir)).toHaveLength(1);
    const latency = await probe.stop();
    expect(latency).not.toBeNull();
    expect(latency!.flushes).toBeGreaterThanOrEqual(3);
    expect(latency!.p50Ms).toBeGreaterThan(0);
    expect(latency!.p50Ms).toBeLessThanOrEqual(latency!.p99Ms);
    expect(latency!.p99Ms).toBeLessThanOrEqual(latency!.maxMs);
    expect(await readdir(dir)).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("summarizes by rank: p50, p99 and max of the timings; null for none", () => {
  const timings = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 down to 1, unsorted on purpose
  expect(summarizeFlushes(timings)).toEqual({ flushes: 100, p50Ms: 51, p99Ms: 100, maxMs: 100 });
  expect(summarizeFlushes([2.345])).toEqual({ flushes: 1, p50Ms: 2.35, p99Ms: 2.35, maxMs: 2.35 });
  expect(summarizeFlushes([])).toBeNull();
});
