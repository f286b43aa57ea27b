import { describe, expect, it } from "vitest";

import { summarize } from "../../bench/lib/open-loop.ts";

describe("summarize (bench/lib/open-loop.ts)", () => {
  it("pools the phases of one handler: percentiles over every request, achieved = successes ÷ the phases' time", () => {
    const fast = { latenciesMs: Array.from({ length: 90 }, () => 1), errors: 0, seconds: 9 };
    const slow = { latenciesMs: Array.from({ length: 10 }, (_, i) => 100 + i), errors: 2, seconds: 1 };
    const result = summarize([fast, slow]);
    expect(result.requests).toBe(100);
    expect(result.p50Ms).toBe(1);
    // The 99th of 100 sorted latencies belongs to the slow phase: pooling must not average phases' p99s.
    expect(result.p99Ms).toBe(109);
    expect(result.maxMs).toBe(109);
    expect(result.errors).toBe(2);
    expect(result.achieved).toBe(9.8);
  });

  it("summarizes one phase as openLoop did", () => {
    const result = summarize([{ latenciesMs: [3, 1, 2, 4], errors: 0, seconds: 2 }]);
    expect(result).toEqual({ requests: 4, achieved: 2, p50Ms: 3, p99Ms: 4, maxMs: 4, errors: 0 });
  });
});
