/**
 * Lowering a thread's or process's CPU priority: the inbox thread and its Postgres sessions
 * (sources/stripe/inbox-thread-main.ts) and the benchmarks' servers (bench/lib/priority.ts). Linux
 * keeps a nice value per thread, so `id` may be a thread id as well as a process id.
 */
import { getPriority, setPriority } from "node:os";

const MAX_NICE = 19;

/** Moves `id` `steps` nice steps down from where it is, at most to 19; throws when not permitted or gone. */
export function lowerPriority(id: number, steps: number): void {
  setPriority(id, Math.min(MAX_NICE, getPriority(id) + steps));
}
