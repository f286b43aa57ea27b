/**
 * bench/lib/machine.ts: the share of a stretch the hypervisor stole or I/O stalled, from Linux's
 * counters as the kernel prints them; and bench/lib/stats.ts median, which the webhook benchmark's
 * median-round ratio is made of.
 */
import { existsSync } from "node:fs";

import { expect, test } from "vitest";

import { machineShareBetween, parseCpuLine, parseFullTotal, takeMachineSnapshot } from "../../bench/lib/machine.ts";
import { median } from "../../bench/lib/stats.ts";

const stat = (steal: number, idle: number): string =>
  [`cpu  100 20 50 ${idle} 10 0 5 ${steal} 0 0`, "cpu0 50 10 25 400 5 0 3 0 0 0", "intr 123", ""].join("\n");
const pressure = (full: number): string => `some avg10=0.00 avg60=0.00 avg300=0.00 total=999999\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=${full}\n`;

test("reads the aggregate cpu line's total and steal, guest time not counted twice", () => {
  expect(parseCpuLine(stat(15, 800))).toEqual({ total: 100 + 20 + 50 + 800 + 10 + 0 + 5 + 15, steal: 15 });
  expect(parseCpuLine("cpu0 1 2 3\n")).toBeNull();
  expect(parseCpuLine("cpu  1 2 x 4 5 6 7 8\n")).toBeNull();
});

test("reads the full line's total, not the some line's", () => {
  expect(parseFullTotal(pressure(4242))).toBe(4242);
  expect(parseFullTotal("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")).toBeNull();
});

test("shares between two snapshots: steal of all CPU time, I/O stall of the wall time", () => {
  const files = new Map<string, string>([
    ["/proc/stat", stat(10, 1000)],
    ["/proc/pressure/io", pressure(1_000_000)],
  ]);
  const before = { ...takeMachineSnapshot((path) => files.get(path) ?? null), atMs: 0 };
  files.set("/proc/stat", stat(10 + 30, 1000 + 170)); // 200 jiffies later, 30 of them stolen
  files.set("/proc/pressure/io", pressure(1_000_000 + 250_000)); // 0.25 s stalled
  const after = { ...takeMachineSnapshot((path) => files.get(path) ?? null), atMs: 2_000 }; // 2 s later
  expect(machineShareBetween(before, after)).toEqual({ stealPct: 15, ioFullPct: 12.5 });
});

test("without the kernel's files both shares are null, not zero", () => {
  const snapshot = takeMachineSnapshot(() => null);
  expect(machineShareBetween(snapshot, snapshot)).toEqual({ stealPct: null, ioFullPct: null });
});

test.runIf(existsSync("/proc/stat"))("on this machine, a real stretch gives shares between 0 and 100", async () => {
  const before = takeMachineSnapshot();
  await new Promise((resolve) => setTimeout(resolve, 200));
  const share = machineShareBetween(before, takeMachineSnapshot());
  expect(share.stealPct).toBeGreaterThanOrEqual(0);
  expect(share.stealPct).toBeLessThanOrEqual(100);
  if (share.ioFullPct !== null) expect(share.ioFullPct).toBeGreaterThanOrEqual(0);
});

test("median: the middle value, the mean of the middle two for an even count", () => {
  expect(median([30, 10, 20])).toBe(20);
  expect(median([40, 10, 30, 20])).toBe(25);
  expect(median([838, 22, 43])).toBe(43);
  expect(median([])).toBeNaN();
});
