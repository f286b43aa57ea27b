/**
 * The disk's commit latency during a stretch of a benchmark: a small file beside the database's,
 * rewritten and flushed (fdatasync) every `intervalMs`, each flush timed. Every handler the
 * webhook benchmark measures commits each event before it answers, so a minute in which this
 * machine's virtual disk flushes slowly is a slow minute for whichever handler it falls on; the
 * guest's own counters (steal, I/O stall: machine.ts) mostly miss it. Ten small flushes a second
 * add little to the hundreds Postgres makes at the rates measured.
 */
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

import { quantile, round } from "./stats.ts";

export interface FsyncLatency {
  /** Flushes timed during the stretch. */
  readonly flushes: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface FsyncProbe {
  /** Ends the probe (after the flush under way) and removes its file; null when no flush was timed. */
  stop(): Promise<FsyncLatency | null>;
}

const PAGE = Buffer.alloc(4096, 0x6d);

/** Starts timing flushes of a file in `dir` (the database's disk), every `intervalMs`. */
export async function startFsyncProbe(dir: string, intervalMs = 100): Promise<FsyncProbe> {
  const path = join(dir, `fsync-probe-${process.pid}-${Date.now()}`);
  const file = await open(path, "w");
  const timings: number[] = [];
  const stopping = new AbortController();
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      const started = performance.now();
      await file.write(PAGE, 0, PAGE.length, 0);
      await file.datasync();
      timings.push(performance.now() - started);
      await sleep(intervalMs, undefined, { signal: stopping.signal }).catch(() => {});
    }
  })();
  // A flush that fails ends the loop; its error is thrown by `stop`, not reported as unhandled mid-round.
  loop.catch(() => {});
  return {
    stop: async () => {
      stopping.abort();
      await loop.finally(async () => {
        await file.close();
        await rm(path, { force: true });
      });
      return summarizeFlushes(timings);
    },
  };
}

export function summarizeFlushes(timingsMs: readonly number[]): FsyncLatency | null {
  if (timingsMs.length === 0) return null;
  const sorted = Float64Array.from(timingsMs).sort();
  return { flushes: sorted.length, p50Ms: round(quantile(sorted, 0.5)), p99Ms: round(quantile(sorted, 0.99)), maxMs: round(sorted[sorted.length - 1]!) };
}
