/**
 * What the machine itself did to a stretch of a benchmark, from Linux's counters: the share of
 * CPU time the hypervisor gave to others (steal, /proc/stat) and the share of wall time in which
 * every runnable task here waited on I/O (pressure stall information, /proc/pressure/io "full").
 * A round whose latency jumps while either does is the machine's slow minute, not the handler's.
 * Both are null where the kernel does not expose them.
 */
import { readFileSync } from "node:fs";

import { round } from "./stats.ts";

export interface MachineSnapshot {
  readonly atMs: number;
  /** Jiffies: all CPU time and the part stolen by the hypervisor (null without /proc/stat). */
  readonly cpu: { readonly total: number; readonly steal: number } | null;
  /** Microseconds in which all non-idle tasks were stalled on I/O (null without PSI). */
  readonly ioFullMicros: number | null;
}

export interface MachineShare {
  /** Steal as a percentage of all CPU time over the stretch. */
  readonly stealPct: number | null;
  /** I/O "full" stall as a percentage of the stretch's wall time. */
  readonly ioFullPct: number | null;
}

export function takeMachineSnapshot(read: (path: string) => string | null = readOrNull): MachineSnapshot {
  const stat = read("/proc/stat");
  const io = read("/proc/pressure/io");
  return { atMs: performance.now(), cpu: stat === null ? null : parseCpuLine(stat), ioFullMicros: io === null ? null : parseFullTotal(io) };
}

export function machineShareBetween(before: MachineSnapshot, after: MachineSnapshot): MachineShare {
  const pct = (part: number, whole: number): number => (whole > 0 ? round((part / whole) * 100) : 0);
  const cpu = before.cpu && after.cpu ? pct(after.cpu.steal - before.cpu.steal, after.cpu.total - before.cpu.total) : null;
  const wallMicros = (after.atMs - before.atMs) * 1000;
  const io = before.ioFullMicros !== null && after.ioFullMicros !== null ? pct(after.ioFullMicros - before.ioFullMicros, wallMicros) : null;
  return { stealPct: cpu, ioFullPct: io };
}

/** The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal [guest guest_nice]. */
export function parseCpuLine(stat: string): { total: number; steal: number } | null {
  const line = stat.split("\n").find((one) => one.startsWith("cpu "));
  if (!line) return null;
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  if (fields.length < 8 || fields.some((v) => !Number.isFinite(v))) return null;
  // guest time is already counted in user and nice, so the first eight fields are the whole.
  return { total: fields.reduce((sum, v) => sum + v, 0), steal: fields[7]! };
}

/** The `full ... total=N` line of a /proc/pressure file (microseconds). */
export function parseFullTotal(pressure: string): number | null {
  const match = /^full .*\btotal=(\d+)/m.exec(pressure);
  return match ? Number(match[1]) : null;
}

function readOrNull(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}
