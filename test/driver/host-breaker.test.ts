import { describe, expect, test } from "vitest";

import { HostBreaker } from "../../src/drivers/dokku/host-breaker.ts";

/** A breaker on a clock the test moves, failing fast for 1000·n ms after the nth failure. */
function breaker(): { b: HostBreaker; advance(ms: number): void } {
  let now = 0;
  return { b: new HostBreaker((n) => 1000 * n, () => now), advance: (ms) => void (now += ms) };
}

describe("HostBreaker", () => {
  test("closed: every command runs, and answers keep it closed", () => {
    const { b } = breaker();
    expect(b.admit()).toEqual({ admission: "normal" });
    b.settle("normal", "answered");
    b.settle("normal", "unknown");
    expect(b.open).toBe(false);
  });

  test("a host-down failure refuses commands until the retry time, then admits one trial at a time", () => {
    const { b, advance } = breaker();
    b.settle("normal", "unreachable");
    expect(b.admit()).toEqual({ refusedForMs: 1000 });
    advance(1000);
    expect(b.admit()).toEqual({ admission: "trial" });
    expect(b.admit(), "a second command while the trial runs").toEqual({ refusedForMs: 0 });
    b.settle("trial", "unreachable");
    expect(b.admit(), "the backoff grows with each failed trial").toEqual({ refusedForMs: 2000 });
    advance(2000);
    expect(b.admit()).toEqual({ admission: "trial" });
    b.settle("trial", "answered");
    expect(b.open).toBe(false);
    expect(b.admit()).toEqual({ admission: "normal" });
  });

  test("commands in flight when it opened do not extend the backoff, and an answer from one closes it", () => {
    const { b } = breaker();
    b.settle("normal", "unreachable");
    b.settle("normal", "unreachable");
    b.settle("normal", "unreachable");
    expect(b.admit()).toEqual({ refusedForMs: 1000 });
    b.settle("normal", "answered");
    expect(b.open).toBe(false);
  });

  test("a trial with no verdict (stalled, dropped, aborted) frees the next trial without changing the backoff", () => {
    const { b, advance } = breaker();
    b.trip();
    advance(1000);
    expect(b.admit()).toEqual({ admission: "trial" });
    b.settle("trial", "unknown");
    expect(b.open).toBe(true);
    expect(b.admit()).toEqual({ admission: "trial" });
  });

  test("trip opens a closed breaker once; an open one keeps its backoff", () => {
    const { b, advance } = breaker();
    b.trip();
    expect(b.admit()).toEqual({ refusedForMs: 1000 });
    advance(500);
    b.trip();
    expect(b.admit()).toEqual({ refusedForMs: 500 });
  });
});
