import { expect, test } from "vitest";

import { pauseUntil } from "../../src/pause.ts";

test("pauseUntil resolves only once the time has come, although Node's timers count whole milliseconds and often fire early", async () => {
  const early: number[] = [];
  for (let i = 0; i < 50; i++) {
    const at = performance.now() + 5;
    await pauseUntil(at, new AbortController().signal);
    if (performance.now() < at) early.push(at - performance.now());
  }
  expect(early).toEqual([]);
});

test("pauseUntil resolves at once when its signal aborts", async () => {
  const aborted = new AbortController();
  aborted.abort();
  const started = performance.now();
  await pauseUntil(started + 10_000, aborted.signal);
  expect(performance.now() - started).toBeLessThan(1_000);
});
