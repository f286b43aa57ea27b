import { describe, expect, it } from "vitest";

import { splitBursts } from "../../bench/bursts.ts";
import { openLoopSamples, summarize } from "../../bench/lib/open-loop.ts";

describe("summarize (bench/lib/open-loop.ts)", () => {
  it("pools the phases of one handler: percentiles over every request, achieved = successes ÷ the phases' time", () => {
    const fast = { latenciesMs: Array.from({ length: 90 }, () => 1), sendLagsMs: Array.from({ length: 90 }, () => 0.5), errors: 0, seconds: 9 };
    const slow = { latenciesMs: Array.from({ length: 10 }, (_, i) => 100 + i), sendLagsMs: Array.from({ length: 10 }, (_, i) => 50 + i), errors: 2, seconds: 1 };
    const result = summarize([fast, slow]);
    expect(result.requests).toBe(100);
    expect(result.p50Ms).toBe(1);
    // The 99th of 100 sorted latencies belongs to the slow phase: pooling must not average phases' p99s.
    expect(result.p99Ms).toBe(109);
    expect(result.maxMs).toBe(109);
    expect(result.errors).toBe(2);
    expect(result.achieved).toBe(9.8);
    expect(result.sendLagP99Ms).toBe(59);
  });

  it("summarizes one phase as openLoop did", () => {
    const result = summarize([{ latenciesMs: [3, 1, 2, 4], sendLagsMs: [0, 1, 0, 0], errors: 0, seconds: 2 }]);
    expect(result).toEqual({ requests: 4, achieved: 2, p50Ms: 3, p99Ms: 4, maxMs: 4, errors: 0, sendLagP99Ms: 1 });
  });
});

describe("openLoopSamples (bench/lib/open-loop.ts)", () => {
  it("sends the lead-in first and measures only what follows it", async () => {
    const sent: number[] = [];
    // 400/s: 0.05 s of lead-in (20 requests) then 0.1 s measured (40); the lead-in's answers fail.
    const samples = await openLoopSamples(400, 0.1, async (i) => (sent.push(i), i >= 20), { leadInSeconds: 0.05 });
    expect(sent).toEqual(Array.from({ length: 60 }, (_, i) => i));
    expect(samples.latenciesMs).toHaveLength(40);
    expect(samples.sendLagsMs).toHaveLength(40);
    expect(samples.errors).toBe(0);
    for (const [i, lag] of samples.sendLagsMs.entries()) {
      expect(lag).toBeGreaterThanOrEqual(0);
      expect(lag).toBeLessThanOrEqual(samples.latenciesMs[i]!);
    }
  });
});

describe("splitBursts (bench/bursts.ts)", () => {
  it("pools the first second of every burst apart from the rest, and counts the slow answers", () => {
    // Two bursts at 4/s over 2 s: the first four requests of each are its first second.
    const bursts = [
      { latenciesMs: [80, 60, 2, 2, 1, 1, 1, 1], sendLagsMs: [0, 0, 0, 0, 0, 0, 0, 0], errors: 1, seconds: 2 },
      { latenciesMs: [3, 3, 3, 3, 1, 1, 1, 70], sendLagsMs: [0, 0, 0, 0, 0, 0, 0, 0], errors: 0, seconds: 2 },
    ];
    const result = splitBursts(bursts, 4);
    expect(result.firstSecond).toEqual({ p50Ms: 3, p99Ms: 80, maxMs: 80, slow: 2 });
    expect(result.rest).toEqual({ p50Ms: 1, p99Ms: 70, maxMs: 70, slow: 1 });
    expect(result.errors).toBe(1);
  });
});
