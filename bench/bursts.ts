/**
 * `npm run bench -- bursts [--rate 2000] [--burst S] [--quiet S] [--cycles N] [--json]`
 *
 * Webhook bursts after quiet spells, the way Stripe sends: what the first second of a burst costs
 * against the rest of it. Same processes as `bench webhook` (bench/lib/webhook-processes.ts): the
 * daemon as `npm start` runs it (its Node flags included) and the minimal baseline handler, on one
 * database. Each cycle: `--quiet` seconds (default 14) in which nothing is sent, then a burst of
 * `--burst` seconds (default 3) at `--rate` to the baseline; the same again for the daemon, once
 * its inbox has drained. The first cycle is a warm-up at the rate, not reported. Reported per
 * handler, over all cycles: the first second of the bursts (p50/p99/max, answers over 50 ms) and
 * the rest, and the daemon's first-second p99 ÷ the baseline's. `--json` prints the JSON alone.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import type { Sql } from "postgres";

import { type LoadSamples, summarize } from "./lib/open-loop.ts";
import { round } from "./lib/stats.ts";
import { drainInbox, withWebhookPair } from "./lib/webhook-pair.ts";
import { type Endpoint, runLoadProcess } from "./lib/webhook-processes.ts";

const SECRET = "whsec_bench_bursts";
const SLOW_MS = 50;

interface Options {
  readonly rate: number;
  readonly burstSeconds: number;
  readonly quietSeconds: number;
  readonly cycles: number;
  readonly json: boolean;
}

interface Part {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Answers slower than SLOW_MS. */
  readonly slow: number;
}

export interface BurstResult {
  readonly firstSecond: Part;
  readonly rest: Part;
  /** Unsuccessful answers, transport errors and timeouts, over whole bursts. */
  readonly errors: number;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({ args: argv, options: { rate: { type: "string" }, burst: { type: "string" }, quiet: { type: "string" }, cycles: { type: "string" }, json: { type: "boolean" } } });
  const options = {
    rate: Number(values.rate ?? 2000),
    burstSeconds: Number(values.burst ?? 3),
    quietSeconds: Number(values.quiet ?? 14),
    cycles: Number(values.cycles ?? 8),
    json: values.json ?? false,
  };
  if (!Number.isInteger(options.rate) || options.rate < 1) throw new Error(`bench bursts: --rate must be a positive integer, got ${values.rate}`);
  if (!(options.burstSeconds > 1) || !(options.quietSeconds >= 0)) throw new Error("bench bursts: --burst must be > 1 and --quiet >= 0 (seconds)");
  if (!Number.isInteger(options.cycles) || options.cycles < 1) throw new Error(`bench bursts: --cycles must be a positive integer, got ${values.cycles}`);
  return options;
}

export async function run(argv: string[]): Promise<void> {
  const options = parse(argv);
  const result = await withWebhookPair({ label: "bursts", secret: SECRET }, ({ sql, baseline, daemon }) => measure(sql, { baseline, daemon }, options));
  process.stdout.write(options.json ? `${JSON.stringify(result)}\n` : `${report(result, options)}\n`);
}

interface Measured {
  readonly rate: number;
  readonly daemon: BurstResult;
  readonly baseline: BurstResult;
  readonly firstSecondP99Ratio: number;
}

async function measure(sql: Sql, targets: { baseline: Endpoint; daemon: Endpoint }, options: Options): Promise<Measured> {
  const bursts: Record<"baseline" | "daemon", LoadSamples[]> = { baseline: [], daemon: [] };
  for (let cycle = 0; cycle <= options.cycles; cycle++) {
    for (const name of ["baseline", "daemon"] as const) {
      await drainInbox(sql);
      await sleep(options.quietSeconds * 1000);
      const samples = await runLoadProcess({ url: targets[name].url, rate: options.rate, seconds: options.burstSeconds, secret: SECRET });
      if (cycle > 0) bursts[name].push(samples);
    }
  }
  const daemon = splitBursts(bursts.daemon, options.rate);
  const baseline = splitBursts(bursts.baseline, options.rate);
  return { rate: options.rate, daemon, baseline, firstSecondP99Ratio: round(daemon.firstSecond.p99Ms / baseline.firstSecond.p99Ms) };
}

/** The bursts' first seconds (the first `rate` requests of each, by due time) and the rest, each pooled. */
export function splitBursts(bursts: readonly LoadSamples[], rate: number): BurstResult {
  const part = (pick: (latencies: readonly number[]) => readonly number[]): Part => {
    const phases = bursts.map((burst) => ({ latenciesMs: pick(burst.latenciesMs), sendLagsMs: pick(burst.sendLagsMs), errors: 0, seconds: 1 }));
    const summary = summarize(phases);
    const slow = phases.reduce((sum, phase) => sum + phase.latenciesMs.filter((ms) => ms > SLOW_MS).length, 0);
    return { p50Ms: summary.p50Ms, p99Ms: summary.p99Ms, maxMs: summary.maxMs, slow };
  };
  const errors = bursts.reduce((sum, burst) => sum + burst.errors, 0);
  return { firstSecond: part((l) => l.slice(0, rate)), rest: part((l) => l.slice(rate)), errors };
}

function report(result: Measured, options: Options): string {
  const header = ["handler", "part", "p50 ms", "p99 ms", "max ms", `> ${SLOW_MS} ms`, "errors (bursts)"];
  const rows = (["baseline", "daemon"] as const).flatMap((name) =>
    (["firstSecond", "rest"] as const).map((key) => {
      const part = result[name][key];
      return [name, key === "firstSecond" ? "first second" : "rest", part.p50Ms, part.p99Ms, part.maxMs, part.slow, key === "rest" ? result[name].errors : ""].map(String);
    }),
  );
  const cells = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const lines = cells.map((row) => row.map((cell, i) => cell.padStart(widths[i]!)).join("  "));
  return [
    `bursts: ${options.cycles} bursts per handler of ${options.burstSeconds} s at ${options.rate}/s, each after ${options.quietSeconds} s of quiet (after a warm-up burst)`,
    ...lines,
    `daemon first-second p99 ÷ baseline's: ${result.firstSecondP99Ratio}`,
  ].join("\n");
}
