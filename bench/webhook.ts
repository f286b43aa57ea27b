/**
 * `npm run bench -- webhook [--rates 500,2000] [--duration S] [--rounds N] [--warmup S] [--cpu-prof DIR] [--control] [--json]`
 *
 * The Stripe webhook of the real daemon against a minimal handler, at the rates Stripe sends.
 * Both run as processes of their own against the same database (DATABASE_URL, or an embedded
 * server in a temporary directory): the daemon is `mindroom-reconciler serve` as `npm start` runs
 * it (routing, logging at info to a file, metrics, its inbox worker and controller running), the
 * baseline is bench/lib/webhook-baseline.ts (verify with stripe-node, insert ON CONFLICT DO
 * NOTHING, answer). For each rate, a load generator in another process (bench/lib/webhook-load.ts)
 * sends distinct, validly signed events open-loop, `--duration` seconds (default 180) to each
 * handler, in `--rounds` interleaved rounds (default 3, so 60 s each: baseline, daemon, daemon,
 * baseline, baseline, daemon), so that both meet the same machine: on a shared 2-core host the
 * p99 of the same handler drifts from one minute to the next, at 2,000/s by more than the goal's
 * 1.5× (`--control` measures by how much). Rounds are long so that each holds the
 * upkeep its own writes bring on while it runs (autovacuum visits a database once a minute).
 * Each round's generator first sends `LEAD_IN_SECONDS` at the rate unmeasured, then measures.
 * After each round the daemon's inbox drains and the upkeep the round left due is done
 * (webhook-pair.ts finishUpkeep), so that no round runs beside the work of the one before, and
 * every round starts after `SETTLE_MS` of quiet. Reported per rate, over all rounds of a handler:
 * achieved rate, p50/p99/max latency from the moment each request was due, errors, the
 * generator's own send lag at p99, and daemon p99 ÷ baseline p99, pooled and as the ratio of the
 * handlers' median rounds; the daemon's inbox in its worst round: the largest pending backlog, the
 * backlog when the round's last request was answered and how long it took to drain to zero; and
 * each round's p99, upkeep and what the machine did meanwhile (CPU steal, I/O stall, and the
 * disk's flush latency from a probe flushing a small file ten times a second: fsync-probe.ts), in
 * the order run.
 * `--rounds 1` measures each handler in one continuous phase. `--control` sends the daemon's rounds
 * to the baseline too (the daemon idles): the "daemon" figures are then the baseline's, and their
 * ratio is what this machine's noise alone gives. `--json` prints the JSON alone.
 */
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

import type { Sql } from "postgres";

import { type FsyncLatency, startFsyncProbe } from "./lib/fsync-probe.ts";
import { type MachineShare, machineShareBetween, takeMachineSnapshot } from "./lib/machine.ts";
import { type LoadResult, type LoadSamples, summarize } from "./lib/open-loop.ts";
import { median, round } from "./lib/stats.ts";
import { drainInbox, finishUpkeep, pendingCount, withWebhookPair } from "./lib/webhook-pair.ts";
import { type Endpoint, runLoadProcess } from "./lib/webhook-processes.ts";

const SECRET = "whsec_bench_webhook";
const WARMUP_RATE = 200;
/** Quiet time before each round, once the inbox has drained: the controller's last reconciles, autovacuum. */
const SETTLE_MS = 2_000;
/**
 * Each round's generator sends this long at the round's rate before it measures. A round's first
 * few hundred milliseconds are a fresh generator process opening its 256 connections, whose
 * stalls (100 to 300 ms, in baseline and daemon rounds alike) land on whichever handler the round
 * measures; six such starts per handler decided the 2,000/s ratio more than the handlers did.
 * How a handler meets load after quiet is `bench bursts`'s measure.
 */
const LEAD_IN_SECONDS = 1;

interface Options {
  readonly rates: number[];
  readonly seconds: number;
  readonly rounds: number;
  readonly warmupSeconds: number;
  readonly cpuProfDir: string | undefined;
  /** Measures the baseline in the daemon's rounds too: the ratio this machine's noise alone gives. */
  readonly control: boolean;
  readonly json: boolean;
}

type Latency = Pick<LoadResult, "achieved" | "p50Ms" | "p99Ms" | "maxMs" | "errors" | "sendLagP99Ms">;

/** The daemon's inbox during its rounds at one rate: each figure is the worst round's. */
export interface InboxBacklog {
  /** Largest count of pending events seen during a round (sampled each second). */
  readonly maxPending: number;
  /** Pending events when a round's last request was answered. */
  readonly pendingAtEnd: number;
  /** Seconds from then until nothing was pending. */
  readonly drainSeconds: number;
}

type Handler = "baseline" | "daemon";

/** One round, in the order run: a rate's pooled p99 is decided by its worst rounds, so each is shown. */
export interface RoundResult {
  readonly handler: Handler;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly errors: number;
  /** The daemon's rounds: its inbox during the round. */
  readonly inbox?: InboxBacklog;
  /** Seconds the upkeep the round left due took after it (and after the inbox's drain): webhook-pair.ts finishUpkeep. */
  readonly upkeepSeconds: number;
  /** What the machine did during the round (CPU steal, I/O stall): a disturbed round shows here. */
  readonly machine: MachineShare;
  /** How long this machine's disk took to flush a small write, timed ten times a second during the round (fsync-probe.ts). */
  readonly fsync: FsyncLatency | null;
}

export interface RateResult {
  readonly rate: number;
  readonly daemon: Latency;
  readonly baseline: Latency;
  /** Pooled: the p99 over all of a handler's requests, daemon ÷ baseline. Decided by the worst rounds. */
  readonly p99Ratio: number;
  /**
   * The median of the daemon's rounds' p99 ÷ the median of the baseline's: what a typical minute
   * of each costs. One slow minute of the machine moves it no more than one round's rank, where it
   * decides the pooled ratio of whichever handler it fell on.
   */
  readonly medianRoundP99Ratio: number;
  readonly inbox: InboxBacklog;
  readonly byRound: readonly RoundResult[];
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { rates: { type: "string" }, duration: { type: "string" }, rounds: { type: "string" }, warmup: { type: "string" }, "cpu-prof": { type: "string" }, control: { type: "boolean" }, json: { type: "boolean" } },
  });
  const rates = (values.rates ?? "500,2000").split(",").map(Number);
  if (rates.some((rate) => !Number.isInteger(rate) || rate < 1)) throw new Error(`bench webhook: --rates must be positive integers separated by commas, got ${values.rates}`);
  const seconds = Number(values.duration ?? 180);
  const warmupSeconds = Number(values.warmup ?? 5);
  if (!(seconds > 0) || !(warmupSeconds >= 0)) throw new Error("bench webhook: --duration must be > 0 and --warmup >= 0 (seconds)");
  const rounds = Number(values.rounds ?? 3);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`bench webhook: --rounds must be a positive integer, got ${values.rounds}`);
  return { rates, seconds, rounds, warmupSeconds, cpuProfDir: values["cpu-prof"], control: values.control ?? false, json: values.json ?? false };
}

export async function run(argv: string[]): Promise<void> {
  const options = parse(argv);
  const results = await withWebhookPair({ label: "webhook", secret: SECRET, cpuProfDir: options.cpuProfDir }, ({ sql, baseline, daemon, dir }) =>
    measureRates(sql, { baseline, daemon: options.control ? baseline : daemon }, dir, options),
  );
  process.stdout.write(options.json ? `${JSON.stringify({ rounds: options.rounds, control: options.control, rates: results })}\n` : `${report(results, options)}\n`);
}

async function measureRates(sql: Sql, targets: { baseline: Endpoint; daemon: Endpoint }, dir: string, options: Options): Promise<RateResult[]> {
  if (options.warmupSeconds > 0) {
    for (const target of [targets.baseline, targets.daemon]) await runLoadProcess({ url: target.url, rate: WARMUP_RATE, seconds: options.warmupSeconds, secret: SECRET });
    await drainInbox(sql);
  }
  await finishUpkeep(sql); // the migrations' and the warm-up's
  const results: RateResult[] = [];
  for (const rate of options.rates) results.push(await measureRate(sql, targets, dir, rate, options));
  return results;
}

/** `options.rounds` rounds of both handlers, their order alternating; after each, the daemon's inbox drains and the round's upkeep is done. */
async function measureRate(sql: Sql, targets: { baseline: Endpoint; daemon: Endpoint }, dir: string, rate: number, options: Options): Promise<RateResult> {
  const request = { rate, seconds: options.seconds / options.rounds, secret: SECRET, leadInSeconds: LEAD_IN_SECONDS };
  const samples: Record<Handler, LoadSamples[]> = { baseline: [], daemon: [] };
  const rounds: RoundResult[] = [];
  const measureRound = async (handler: Handler): Promise<void> => {
    const watch = handler === "daemon" ? watchBacklog(sql) : null;
    const before = takeMachineSnapshot();
    const probe = await startFsyncProbe(dir);
    const phase = await runLoadProcess({ ...request, url: targets[handler].url });
    const fsync = await probe.stop();
    const machine = machineShareBetween(before, takeMachineSnapshot());
    samples[handler].push(phase);
    const { p99Ms, maxMs, errors } = summarize([phase]);
    let inbox: InboxBacklog | undefined;
    if (watch) {
      const { maxPending, pendingAtEnd } = await watch.stop();
      inbox = { maxPending, pendingAtEnd, drainSeconds: round(await drainInbox(sql)) };
    }
    rounds.push({ handler, p99Ms, maxMs, errors, ...(inbox && { inbox }), upkeepSeconds: round(await finishUpkeep(sql)), machine, fsync });
  };
  for (let i = 0; i < options.rounds; i++) {
    for (const handler of i % 2 === 0 ? (["baseline", "daemon"] as const) : (["daemon", "baseline"] as const)) {
      await sleep(SETTLE_MS);
      await measureRound(handler);
    }
  }
  const daemonLatency = latency(summarize(samples.daemon));
  const baselineLatency = latency(summarize(samples.baseline));
  const medianRoundP99 = (handler: Handler): number => median(rounds.filter((one) => one.handler === handler).map((one) => one.p99Ms));
  const backlogs = rounds.flatMap((one) => (one.inbox ? [one.inbox] : []));
  const worst = (pick: (b: InboxBacklog) => number): number => Math.max(...backlogs.map(pick));
  return {
    rate,
    daemon: daemonLatency,
    baseline: baselineLatency,
    p99Ratio: round(daemonLatency.p99Ms / baselineLatency.p99Ms),
    medianRoundP99Ratio: round(medianRoundP99("daemon") / medianRoundP99("baseline")),
    inbox: { maxPending: worst((b) => b.maxPending), pendingAtEnd: worst((b) => b.pendingAtEnd), drainSeconds: worst((b) => b.drainSeconds) },
    byRound: rounds,
  };
}

const latency = (r: LoadResult): Latency => ({ achieved: r.achieved, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, errors: r.errors, sendLagP99Ms: r.sendLagP99Ms });

/** Samples the pending backlog each second until stopped. */
function watchBacklog(sql: Sql): { stop(): Promise<{ maxPending: number; pendingAtEnd: number }> } {
  let maxPending = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      maxPending = Math.max(maxPending, await pendingCount(sql));
      await sleep(1_000);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      const pendingAtEnd = await pendingCount(sql);
      return { maxPending: Math.max(maxPending, pendingAtEnd), pendingAtEnd };
    },
  };
}

function report(results: RateResult[], options: Options): string {
  const header = ["rate/s", "handler", "achieved/s", "p50 ms", "p99 ms", "max ms", "errors", "gen lag p99", "p99 ratio", "median-round ratio", "inbox max", "at end", "drain s"];
  const rows = results.flatMap((r) => [
    [r.rate, "baseline", r.baseline.achieved, r.baseline.p50Ms, r.baseline.p99Ms, r.baseline.maxMs, r.baseline.errors, r.baseline.sendLagP99Ms, "", "", "", "", ""],
    [r.rate, "daemon", r.daemon.achieved, r.daemon.p50Ms, r.daemon.p99Ms, r.daemon.maxMs, r.daemon.errors, r.daemon.sendLagP99Ms, r.p99Ratio, r.medianRoundP99Ratio, r.inbox.maxPending, r.inbox.pendingAtEnd, r.inbox.drainSeconds],
  ]);
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  const lines = cells.map((row) => row.map((cell, i) => cell.padStart(widths[i]!)).join("  "));
  const rounds = options.rounds === 1 ? "in one phase" : `in ${options.rounds} interleaved rounds`;
  return [
    `webhook: open loop, ${options.seconds} s per rate and handler ${rounds} (each after a ${LEAD_IN_SECONDS} s unmeasured lead-in), distinct signed events; latency from each request's due time; gen lag: the generator's own delay in starting a request, part of its latency; inbox: worst round`,
    ...(options.control ? ["CONTROL RUN: the rows marked daemon measured the baseline again; their ratio is this machine's noise alone"] : []),
    ...lines,
    ...results.map(roundsLine),
  ].join("\n");
}

/** "2000/s by round, p99 ms: B 27.9 [upkeep 0.4 s, steal 0%, io stall 1.2%, fsync p99 3.1 ms] · D 54.1 (inbox max 408) [...] · ..." */
function roundsLine(r: RateResult): string {
  const share = (pct: number | null): string => (pct === null ? "n/a" : `${pct}%`);
  const cells = r.byRound.map(
    (one) =>
      `${one.handler === "daemon" ? "D" : "B"} ${one.p99Ms}${one.inbox ? ` (inbox max ${one.inbox.maxPending})` : ""} [upkeep ${one.upkeepSeconds} s, steal ${share(one.machine.stealPct)}, io stall ${share(one.machine.ioFullPct)}, fsync p99 ${one.fsync ? `${one.fsync.p99Ms} ms` : "n/a"}]`,
  );
  return `${r.rate}/s by round, p99 ms: ${cells.join(" · ")}`;
}
