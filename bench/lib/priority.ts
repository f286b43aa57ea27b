/**
 * Puts what a benchmark measures behind its load generator for the CPU. Stripe sends from its own
 * machines, which the daemon's work never slows; on one shared machine the generator would be
 * starved exactly when the server it measures is busiest, and its own lateness would then count
 * as the server's latency (at 2,000 events/s on 2 cores its event loop fell up to ~100 ms behind).
 * Started before any generator, `lowerDescendants` moves every process this one has started so
 * far (Postgres and its background processes, the servers) and every thread of each `steps` nice
 * steps down; what they start later (Postgres backends, worker threads) inherits the value, while
 * generators forked afterwards keep this process's. Linux only (nice values are per thread, read
 * from /proc); elsewhere, or where a priority cannot be changed, it changes nothing and says so.
 */
import { readdirSync, readFileSync } from "node:fs";

import { lowerPriority } from "../../src/nice.ts";

/** Lowers the priority of every descendant of this process; answers how many threads it moved. */
export function lowerDescendants(steps: number): number {
  let moved = 0;
  for (const pid of descendantsOf(process.pid)) {
    for (const tid of threadsOf(pid)) {
      try {
        lowerPriority(tid, steps);
        moved += 1;
      } catch {
        // Gone meanwhile, or not ours to change.
      }
    }
  }
  return moved;
}

/** Every process below `root`, from /proc's parent ids; empty where there is no /proc. */
function descendantsOf(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const pid of processIds()) {
    const parent = parentOf(pid);
    if (parent !== undefined) children.set(parent, [...(children.get(parent) ?? []), pid]);
  }
  const found: number[] = [];
  const queue = [...(children.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    found.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return found;
}

function processIds(): number[] {
  try {
    return readdirSync("/proc").filter((name) => /^\d+$/.test(name)).map(Number);
  } catch {
    return [];
  }
}

/** The parent id from /proc/<pid>/stat: the field after the command, which is in parentheses and may hold spaces. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

function threadsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return [pid];
  }
}
