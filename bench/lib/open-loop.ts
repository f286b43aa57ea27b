/**
 * Open-loop load at a fixed rate, the way real clients send: request i is due at
 * start + i / rate whatever the answers to earlier ones, and its latency runs from the moment it
 * was due (not from when it went out), so a server or generator that falls behind shows in the
 * figures instead of slowing the load down. Runs in a load generator's own process.
 */
import { quantile, round } from "./stats.ts";

export interface LoadResult {
  readonly requests: number;
  /** Successful answers per second, from the first due time to the last answer. */
  readonly achieved: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Unsuccessful answers, transport errors and timeouts. */
  readonly errors: number;
  /**
   * The generator's own delay at p99: from a request's due time until the generator started it.
   * It is part of every latency above; a large one says the figures measure the generator too.
   */
  readonly sendLagP99Ms: number;
}

/**
 * What one open-loop phase measured before it is summarized: every request's latency (ms, from its
 * due time), the unsuccessful ones, and how long the phase ran (first due time to last answer).
 * Phases of one handler measured apart (interleaved with another's) are summarized together.
 */
export interface LoadSamples {
  readonly latenciesMs: readonly number[];
  /** Per request, as `latenciesMs`: from its due time until the generator called `send`. */
  readonly sendLagsMs: readonly number[];
  readonly errors: number;
  readonly seconds: number;
}

export interface OpenLoopOptions {
  /**
   * Seconds sent at the same rate just before the measured ones, continuing into them, and not
   * measured: the generator's code is compiled and its connections open when measuring starts,
   * so a phase measures the server's steady state, not a fresh generator process (default 0).
   */
  readonly leadInSeconds?: number;
}

/** Sends `rate × seconds` requests with `send(i)`, which resolves true for a successful answer. */
export async function openLoop(rate: number, seconds: number, send: (i: number) => Promise<boolean>, options: OpenLoopOptions = {}): Promise<LoadResult> {
  return summarize([await openLoopSamples(rate, seconds, send, options)]);
}

/**
 * `openLoop`, answering the samples themselves. With a lead-in, `send` is called with 0, 1, ...
 * for the lead-in's requests first; the samples (and `errors`, and `seconds` from the first
 * measured due time) cover the measured requests only, which `send` sees as the later indexes.
 */
export async function openLoopSamples(rate: number, seconds: number, send: (i: number) => Promise<boolean>, options: OpenLoopOptions = {}): Promise<LoadSamples> {
  const measured = Math.max(1, Math.round(rate * seconds));
  const leadIn = Math.max(0, Math.round(rate * (options.leadInSeconds ?? 0)));
  const total = leadIn + measured;
  const latencies: number[] = new Array<number>(measured);
  const sendLags: number[] = new Array<number>(measured);
  let errors = 0;
  let lastAnswer = 0;
  const round3 = (ms: number): number => Math.round(ms * 1000) / 1000;
  const one = async (i: number, due: number): Promise<void> => {
    const sentAt = performance.now();
    const ok = await send(i).catch(() => false);
    if (i < leadIn) return;
    if (!ok) errors += 1;
    lastAnswer = performance.now();
    latencies[i - leadIn] = round3(lastAnswer - due);
    sendLags[i - leadIn] = round3(sentAt - due);
  };
  const pending: Promise<void>[] = [];
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      for (; sent < due; sent++) pending.push(one(sent, start + (sent * 1000) / rate));
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await Promise.all(pending);
  const measuredStart = start + (leadIn * 1000) / rate;
  return { latenciesMs: latencies, sendLagsMs: sendLags, errors, seconds: (lastAnswer - measuredStart) / 1000 };
}

/** One result for the phases together: percentiles over all their requests, achieved = successes ÷ the phases' time. */
export function summarize(phases: readonly LoadSamples[]): LoadResult {
  const latencies = Float64Array.from(phases.flatMap((phase) => phase.latenciesMs)).sort();
  const total = latencies.length;
  const errors = phases.reduce((sum, phase) => sum + phase.errors, 0);
  const seconds = phases.reduce((sum, phase) => sum + phase.seconds, 0);
  const sendLags = Float64Array.from(phases.flatMap((phase) => phase.sendLagsMs)).sort();
  const at = (sorted: Float64Array, q: number): number => round(quantile(sorted, q));
  return { requests: total, achieved: round((total - errors) / seconds), p50Ms: at(latencies, 0.5), p99Ms: at(latencies, 0.99), maxMs: round(latencies[total - 1]!), errors, sendLagP99Ms: at(sendLags, 0.99) };
}
