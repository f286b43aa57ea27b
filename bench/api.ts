/**
 * `npm run bench -- api [--rate 500] [--duration S] [--warmup S] [--keys N] [--json]`
 *
 * The `/v1` API of the real daemon (`mindroom-reconciler serve` as `npm start` runs it, in its own
 * process, logging at info, metrics on) against its own `GET /healthz` on the same server in the
 * same run: the baseline is what any request costs there (HTTP, routing, the event loop), so the
 * ratio is what the API adds (authentication, the Postgres rate-limit bucket, the query). A load
 * generator in a third process (bench/lib/http-load.ts) sends `GET /v1/instances` open-loop at
 * `--rate` requests per second (default 500) for `--duration` seconds (default 30), spread over
 * `--keys` enterprise keys (default 10: one key's 6,000 per minute is below 500 per second), then
 * `GET /healthz` at the same rate. A 429 counts as an error. `--json` prints the JSON alone.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { loadConfig } from "../src/config.ts";
import { createApiKey } from "../src/state/api-keys.ts";
import { seed } from "../src/state/db.ts";
import { runInChildProcess } from "./lib/child-process.ts";
import type { HttpLoadRequest } from "./lib/http-load.ts";
import type { LoadResult } from "./lib/open-loop.ts";
import { openBenchPostgres } from "./lib/pg.ts";
import { round } from "./lib/stats.ts";
import { startDaemon } from "./lib/webhook-processes.ts";

const LOAD = fileURLToPath(new URL("./lib/http-load.ts", import.meta.url));
const ENTERPRISE_ACCOUNT = "a0000000-0000-4000-8000-000000000004";
const ENTERPRISE_SUBSCRIPTION = "b0000000-0000-4000-8000-000000000004";
/** Torn-down instances the list returns (the controller leaves them alone): a page of 10. */
const LISTED_INSTANCES = 12;
const LOAD_SLACK_MS = 60_000;

interface Options {
  readonly rate: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly keys: number;
  readonly json: boolean;
}

type Latency = Pick<LoadResult, "achieved" | "p50Ms" | "p99Ms" | "maxMs" | "errors">;

export interface ApiBenchResult {
  readonly rate: number;
  readonly api: Latency;
  readonly healthz: Latency;
  readonly p50Ratio: number;
  readonly p99Ratio: number;
}

function parse(argv: string[]): Options {
  const { values } = parseArgs({ args: argv, options: { rate: { type: "string" }, duration: { type: "string" }, warmup: { type: "string" }, keys: { type: "string" }, json: { type: "boolean" } } });
  const options = { rate: Number(values.rate ?? 500), seconds: Number(values.duration ?? 30), warmupSeconds: Number(values.warmup ?? 5), keys: Number(values.keys ?? 10), json: values.json ?? false };
  if (!Number.isInteger(options.rate) || options.rate < 1) throw new Error(`bench api: --rate must be a positive integer, got ${values.rate}`);
  if (!(options.seconds > 0) || !(options.warmupSeconds >= 0)) throw new Error("bench api: --duration must be > 0 and --warmup >= 0 (seconds)");
  if (!Number.isInteger(options.keys) || options.keys < 1 || options.keys > 20) throw new Error("bench api: --keys must be 1 to 20 (an account holds at most 20 active keys)");
  return options;
}

export async function run(argv: string[]): Promise<void> {
  const options = parse(argv);
  const dir = await mkdtemp(join(tmpdir(), "mindroom-bench-api-"));
  const pg = await openBenchPostgres(loadConfig({ DATABASE_URL: process.env.DATABASE_URL }).databaseUrl);
  let stopDaemon: (() => Promise<void>) | undefined;
  try {
    const db = await pg.createDatabase("api", { max: 2 });
    await seed(db.sql);
    for (let i = 0; i < LISTED_INSTANCES; i++) {
      await db.sql`insert into public.instances (subscription_id, account_id, subdomain, status) values (${ENTERPRISE_SUBSCRIPTION}, ${ENTERPRISE_ACCOUNT}, ${`bench-${i}`}, 'deprovisioned')`;
    }
    const keys: string[] = [];
    for (let i = 0; i < options.keys; i++) keys.push((await createApiKey(db.sql, ENTERPRISE_ACCOUNT, `bench ${i}`, ["instances:read"], null)).key);
    const daemon = await startDaemon({ databaseUrl: db.url, secret: "whsec_bench_api", dir });
    stopDaemon = () => daemon.stop();
    const origin = new URL(daemon.url).origin;
    const result = await measure(origin, keys, options);
    process.stdout.write(options.json ? `${JSON.stringify(result)}\n` : `${report(result, options)}\n`);
  } finally {
    await stopDaemon?.().catch((error: unknown) => process.stderr.write(`bench api: cleanup failed: ${String(error)}\n`));
    await pg.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function measure(origin: string, keys: readonly string[], options: Options): Promise<ApiBenchResult> {
  const headers = keys.map((key) => ({ authorization: `Bearer ${key}` }));
  const api = (seconds: number) => load({ url: `${origin}/v1/instances`, rate: options.rate, seconds, expect: 200, headers });
  const healthz = (seconds: number) => load({ url: `${origin}/healthz`, rate: options.rate, seconds, expect: 200, headers: [] });
  if (options.warmupSeconds > 0) {
    await api(options.warmupSeconds);
    await healthz(options.warmupSeconds);
  }
  const apiResult = latency(await api(options.seconds));
  const healthzResult = latency(await healthz(options.seconds));
  return { rate: options.rate, api: apiResult, healthz: healthzResult, p50Ratio: round(apiResult.p50Ms / healthzResult.p50Ms), p99Ratio: round(apiResult.p99Ms / healthzResult.p99Ms) };
}

function load(request: HttpLoadRequest): Promise<LoadResult> {
  return runInChildProcess<HttpLoadRequest, LoadResult>(LOAD, request, {
    limitMs: request.seconds * 1000 + LOAD_SLACK_MS,
    timeoutMessage: `the load generator did not finish ${request.rate}/s for ${request.seconds} s`,
    label: "load generator",
  });
}

const latency = (r: LoadResult): Latency => ({ achieved: r.achieved, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, errors: r.errors });

function report(result: ApiBenchResult, options: Options): string {
  const row = (name: string, l: Latency) => `${name.padEnd(22)} ${String(l.achieved).padStart(9)} ${String(l.p50Ms).padStart(8)} ${String(l.p99Ms).padStart(8)} ${String(l.maxMs).padStart(8)} ${String(l.errors).padStart(7)}`;
  return [
    `GET /v1/instances vs GET /healthz on the same daemon, ${options.rate} requests/s open loop for ${options.seconds} s each, ${options.keys} enterprise keys`,
    "",
    `${"".padEnd(22)} ${"achieved".padStart(9)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"max ms".padStart(8)} ${"errors".padStart(7)}`,
    row("GET /v1/instances", result.api),
    row("GET /healthz (base)", result.healthz),
    "",
    `ratio /v1 ÷ /healthz: p50 ${result.p50Ratio}×, p99 ${result.p99Ratio}×`,
    "",
    JSON.stringify(result),
  ].join("\n");
}
