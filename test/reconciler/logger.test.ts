/** DeferredChildLogger (src/reconciler/logger.ts): the child is made only to write a line, and carries its bindings. */
import { Writable } from "node:stream";

import { pino } from "pino";
import { describe, expect, test, vi } from "vitest";

import { DeferredChildLogger, type LoggerLike } from "../../src/reconciler/logger.ts";

/** A pino logger at `level` whose lines are collected, parsed. */
function collectingPino(level: string): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level }, stream), lines };
}

describe("DeferredChildLogger", () => {
  test("a line at a level the parent does not write makes no child and writes nothing", () => {
    const { logger, lines } = collectingPino("info");
    const child = vi.spyOn(logger, "child");
    const deferred = new DeferredChildLogger(logger, { subscription: "s1" });
    deferred.debug({ detail: 1 }, "reconciled");
    expect(child).not.toHaveBeenCalled();
    expect(lines).toEqual([]);
    expect(deferred.isLevelEnabled("debug")).toBe(false);
  });

  test("written lines carry the bindings; the child is made once", () => {
    const { logger, lines } = collectingPino("info");
    const child = vi.spyOn(logger, "child");
    const deferred = new DeferredChildLogger(logger, { subscription: "s1", reconcileId: "r1" });
    deferred.info({ step: 1 }, "first");
    deferred.error({ step: 2 }, "second");
    deferred.debug({ step: 3 }, "not written");
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines.map((line) => [line.msg, line.subscription, line.reconcileId, line.step])).toEqual([
      ["first", "s1", "r1", 1],
      ["second", "s1", "r1", 2],
    ]);
  });

  test("a child of the deferred child has both sets of bindings", () => {
    const { logger, lines } = collectingPino("debug");
    new DeferredChildLogger(logger, { subscription: "s1" }).child({ host: "h1" }).debug({}, "deeper");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ subscription: "s1", host: "h1", msg: "deeper" });
  });

  test("a parent that cannot tell its level gets every line", () => {
    const written: [string, unknown][] = [];
    const parent: LoggerLike = {
      debug: (obj) => written.push(["debug", obj]),
      info: (obj) => written.push(["info", obj]),
      warn: (obj) => written.push(["warn", obj]),
      error: (obj) => written.push(["error", obj]),
      child: () => parent,
    };
    const deferred = new DeferredChildLogger(parent, { subscription: "s1" });
    deferred.debug({ a: 1 });
    deferred.warn({ b: 2 });
    expect(written).toEqual([
      ["debug", { a: 1 }],
      ["warn", { b: 2 }],
    ]);
  });
});
