/**
 * `npm run bench -- webhook [--requests N] [--concurrency C]`
 *
 * Webhook answer time (p50/p99) and throughput under a steady load of signed events on loopback,
 * with the inbox durable in real Postgres (DATABASE_URL, or an embedded server in a temp dir),
 * compared with a baseline measured in the same run: the same requests to a handler that only
 * verifies the signature and answers, without the insert. Then the inbox worker's processing
 * rate (payload mode: accounts, subscriptions and instance requests really written).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type RequestListener, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import type { Sql } from "postgres";
import { Registry } from "prom-client";
import Stripe from "stripe";

import { StripeInbox } from "../src/sources/stripe/inbox.ts";
import { createStripeMetrics } from "../src/sources/stripe/metrics.ts";
import { StripeSim } from "../src/sources/stripe/sim.ts";
import { createStripeWebhookHandler } from "../src/sources/stripe/webhook.ts";
import { connect, withDatabaseName } from "../src/state/db.ts";
import { openOwnEmbeddedDatabase } from "../src/state/embedded.ts";
import { migrate } from "../src/state/migrate.ts";

const SECRET = "whsec_bench";
const logger = { info: () => {}, warn: () => {}, error: () => {}, debug: () => {} };

interface LoadResult {
  readonly requests: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non200: number;
}

export async function run(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { requests: { type: "string" }, concurrency: { type: "string" } } });
  const requests = Number(values.requests ?? 2000);
  const concurrency = Number(values.concurrency ?? 16);
  const pg = await openPostgres();
  try {
    const bodies = signedEvents(requests);
    const metrics = createStripeMetrics(new Registry());
    const baseline = await serve(baselineHandler());
    const durable = await serve(createStripeWebhookHandler({ sql: pg.sql, secrets: [SECRET], metrics, logger }));
    await load(baseline.url, bodies.slice(0, 200), concurrency); // warm-up, both paths
    const base = await load(baseline.url, bodies, concurrency);
    const real = await load(durable.url, bodies, concurrency);
    await baseline.close();
    await durable.close();
    const worker = await drainWorker(pg.sql, metrics);
    report({ requests, concurrency, baseline: base, webhook: real, worker });
  } finally {
    await pg.close();
  }
}

/** Half `customer.created`, half `customer.subscription.created`, with their invoices: what Stripe sends for new sign-ups. */
function signedEvents(n: number): Array<{ body: string; signature: string }> {
  const sim = new StripeSim(() => Math.floor(Date.now() / 1000));
  while (sim.events.length < n) sim.createSubscription({ customer: sim.createCustomer({ email: null }), tier: "starter" });
  return sim.events.slice(0, n).map((event) => {
    const body = JSON.stringify(event);
    return { body, signature: Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) };
  });
}

/** Verifies like the real handler and answers 200, with no database. */
function baselineHandler(): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  return async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    Stripe.webhooks.constructEvent(Buffer.concat(chunks), String(req.headers["stripe-signature"]), SECRET);
    res.writeHead(200, { "content-type": "application/json" });
    res.end('{"received":true}');
  };
}

async function serve(handler: (req: IncomingMessage, res: ServerResponse) => Promise<void>): Promise<{ url: string; close(): Promise<void> }> {
  const listener: RequestListener = (req, res) => void handler(req, res);
  const server = createServer({ keepAlive: true }, listener);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks/stripe`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

async function load(url: string, bodies: ReadonlyArray<{ body: string; signature: string }>, concurrency: number): Promise<LoadResult> {
  const latencies: number[] = [];
  let next = 0;
  let non200 = 0;
  const started = performance.now();
  const workers = Array.from({ length: concurrency }, async () => {
    while (next < bodies.length) {
      const item = bodies[next++]!;
      const t0 = performance.now();
      const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": item.signature }, body: item.body });
      await res.arrayBuffer();
      latencies.push(performance.now() - t0);
      if (res.status !== 200) non200 += 1;
    }
  });
  await Promise.all(workers);
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number => round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0);
  return { requests: bodies.length, seconds: round(seconds), perSecond: round(bodies.length / seconds), p50Ms: pct(0.5), p99Ms: pct(0.99), non200 };
}

async function drainWorker(sql: Sql, metrics: ReturnType<typeof createStripeMetrics>): Promise<{ events: number; seconds: number; perSecond: number }> {
  const inbox = new StripeInbox({ sql, stripe: null, priceTiers: {}, metrics, logger, deferMs: 0 });
  const started = performance.now();
  let events = 0;
  for (let idle = 0; idle < 3; ) {
    const pass = await inbox.processPendingOnce();
    events += pass.counts.processed ?? 0;
    idle = pass.events === 0 ? idle + 1 : 0;
  }
  const seconds = (performance.now() - started) / 1000;
  return { events, seconds: round(seconds), perSecond: round(events / seconds) };
}

function report(r: { requests: number; concurrency: number; baseline: LoadResult; webhook: LoadResult; worker: { events: number; seconds: number; perSecond: number } }): void {
  const ratio = { p50: round(r.webhook.p50Ms / r.baseline.p50Ms), p99: round(r.webhook.p99Ms / r.baseline.p99Ms), throughput: round(r.webhook.perSecond / r.baseline.perSecond) };
  process.stdout.write(`${JSON.stringify({ benchmark: "webhook", ...r, ratio }, null, 2)}\n\n`);
  const row = (name: string, l: LoadResult): string => `${name.padEnd(22)} ${String(l.p50Ms).padStart(8)} ${String(l.p99Ms).padStart(8)} ${String(l.perSecond).padStart(10)} ${String(l.non200).padStart(6)}`;
  process.stdout.write(`${"path".padEnd(22)} ${"p50 ms".padStart(8)} ${"p99 ms".padStart(8)} ${"req/s".padStart(10)} ${"non200".padStart(6)}\n`);
  process.stdout.write(`${row("verify only (baseline)", r.baseline)}\n${row("verify + inbox insert", r.webhook)}\n`);
  process.stdout.write(`ratio webhook/baseline: p50 x${ratio.p50}, p99 x${ratio.p99}, throughput x${ratio.throughput}\n`);
  process.stdout.write(`inbox worker: ${r.worker.events} events in ${r.worker.seconds} s = ${r.worker.perSecond} events/s\n`);
}

const round = (v: number): number => Math.round(v * 100) / 100;

/** DATABASE_URL, else an embedded server in a temp dir; either way a fresh, migrated database. */
async function openPostgres(): Promise<{ sql: Sql; close(): Promise<void> }> {
  const external = process.env.DATABASE_URL;
  const dir = external ? null : await mkdtemp(join(tmpdir(), "mindroom-bench-"));
  const server = dir ? await openOwnEmbeddedDatabase(dir, () => {}) : null;
  const adminUrl = external ?? server!.url;
  const name = `mindroom_bench_${Math.random().toString(36).slice(2, 10)}`;
  const admin = connect(adminUrl, { max: 1 });
  await admin.unsafe(`create database ${name}`);
  const sql = connect(withDatabaseName(adminUrl, name), { max: 20 });
  await migrate(sql);
  return {
    sql,
    close: async () => {
      await sql.end({ timeout: 5 });
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end();
      await server?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    },
  };
}
