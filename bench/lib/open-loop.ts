/**
 * Open-loop load at a fixed rate, the way real clients send: request i is due at
 * start + i / rate whatever the answers to earlier ones, and its latency runs from the moment it
 * was due (not from when it went out), so a server or generator that falls behind shows in the
 * figures instead of slowing the load down. Runs in a load generator's own process.
 */
export interface LoadResult {
  readonly requests: number;
  /** Successful answers per second, from the first due time to the last answer. */
  readonly achieved: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Unsuccessful answers, transport errors and timeouts. */
  readonly errors: number;
}

/**
 * What one open-loop phase measured before it is summarized: every request's latency (ms, from its
 * due time), the unsuccessful ones, and how long the phase ran (first due time to last answer).
 * Phases of one handler measured apart (interleaved with another's) are summarized together.
 */
export interface LoadSamples {
  readonly latenciesMs: readonly number[];
  readonly errors: number;
  readonly seconds: number;
}

/** Sends `rate × seconds` requests with `send(i)`, which resolves true for a successful answer. */
export async function openLoop(rate: number, seconds: number, send: (i: number) => Promise<boolean>): Promise<LoadResult> {
  return summarize([await openLoopSamples(rate, seconds, send)]);
}

/** `openLoop`, answering the samples themselves. */
export async function openLoopSamples(rate: number, seconds: number, send: (i: number) => Promise<boolean>): Promise<LoadSamples> {
  const total = Math.max(1, Math.round(rate * seconds));
  const latencies: number[] = new Array<number>(total);
  let errors = 0;
  let lastAnswer = 0;
  const one = async (i: number, due: number): Promise<void> => {
    const ok = await send(i).catch(() => false);
    if (!ok) errors += 1;
    lastAnswer = performance.now();
    latencies[i] = Math.round((lastAnswer - due) * 1000) / 1000;
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
  return { latenciesMs: latencies, errors, seconds: (lastAnswer - start) / 1000 };
}

/** One result for the phases together: percentiles over all their requests, achieved = successes ÷ the phases' time. */
export function summarize(phases: readonly LoadSamples[]): LoadResult {
  const latencies = Float64Array.from(phases.flatMap((phase) => phase.latenciesMs)).sort();
  const total = latencies.length;
  const errors = phases.reduce((sum, phase) => sum + phase.errors, 0);
  const seconds = phases.reduce((sum, phase) => sum + phase.seconds, 0);
  const at = (q: number): number => round(latencies[Math.min(total - 1, Math.floor(total * q))]!);
  return { requests: total, achieved: round((total - errors) / seconds), p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(latencies[total - 1]!), errors };
}

export const round = (v: number): number => Math.round(v * 100) / 100;
