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

/** Sends `rate × seconds` requests with `send(i)`, which resolves true for a successful answer. */
export async function openLoop(rate: number, seconds: number, send: (i: number) => Promise<boolean>): Promise<LoadResult> {
  const total = Math.max(1, Math.round(rate * seconds));
  const latencies = new Float64Array(total);
  let errors = 0;
  let lastAnswer = 0;
  const one = async (i: number, due: number): Promise<void> => {
    const ok = await send(i).catch(() => false);
    if (!ok) errors += 1;
    lastAnswer = performance.now();
    latencies[i] = lastAnswer - due;
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
  latencies.sort();
  const at = (q: number): number => round(latencies[Math.min(total - 1, Math.floor(total * q))]!);
  return { requests: total, achieved: round((total - errors) / ((lastAnswer - start) / 1000)), p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(latencies[total - 1]!), errors };
}

export const round = (v: number): number => Math.round(v * 100) / 100;
