/**
 * The webhook benchmark's load generator, in a process of its own (forked by bench/webhook.ts) so
 * that it never shares an event loop with a server it measures.
 *
 * Open loop: request i is due at start + i / rate, whatever the answers to earlier requests; a
 * request's latency runs from the moment it was due (not from when it went out), so a server or
 * generator that falls behind shows in the figures instead of slowing the load down. Each
 * request is a distinct event (StripeSim sign-ups whose first payment fails: customer,
 * subscription and invoice events that the inbox worker applies in full, without asking the
 * controller to provision anything), signed just before it is sent. undici's Pool keeps the
 * connections; a request unanswered after 10 s (Stripe's own timeout) counts as an error.
 */
import Stripe from "stripe";
import { Pool } from "undici";

import { StripeSim } from "../../src/sources/stripe/sim.ts";

export interface LoadRequest {
  readonly url: string;
  readonly rate: number;
  readonly seconds: number;
  readonly secret: string;
}

export interface LoadResult {
  readonly requests: number;
  /** Successful answers per second, from the first due time to the last answer. */
  readonly achieved: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** Answers other than 200, transport errors and timeouts. */
  readonly errors: number;
}

const TIMEOUT_MS = 10_000;
const CONNECTIONS = 256;
const TIERS = ["starter", "professional", "enterprise"] as const;
const SIGNUPS_PER_SIM = 200;

/** Distinct, realistic event bodies, made as they are needed. */
function eventBodies(): () => string {
  let sim: StripeSim | null = null;
  let signups = 0;
  let next = 0;
  return () => {
    while (sim === null || next >= sim.events.length) {
      if (sim === null || signups % SIGNUPS_PER_SIM === 0) {
        sim = new StripeSim(() => Math.floor(Date.now() / 1000));
        next = 0;
      }
      const tier = TIERS[signups % TIERS.length]!;
      sim.createSubscription({ customer: sim.createCustomer({ email: `load-${signups}@example.com` }), tier, failFirstPayment: true });
      signups += 1;
    }
    return JSON.stringify(sim.events[next++]);
  };
}

export async function runLoad(request: LoadRequest): Promise<LoadResult> {
  const url = new URL(request.url);
  const pool = new Pool(url.origin, { connections: CONNECTIONS, pipelining: 1, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  const total = Math.max(1, Math.round(request.rate * request.seconds));
  const latencies = new Float64Array(total);
  const nextBody = eventBodies();
  let errors = 0;
  let lastAnswer = 0;
  const send = async (i: number, due: number): Promise<void> => {
    const body = nextBody();
    const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: request.secret });
    try {
      const res = await pool.request({ path: url.pathname, method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body });
      await res.body.dump();
      if (res.statusCode !== 200) errors += 1;
    } catch {
      errors += 1;
    }
    lastAnswer = performance.now();
    latencies[i] = lastAnswer - due;
  };
  const pending: Promise<void>[] = [];
  const start = performance.now();
  await new Promise<void>((resolve) => {
    let sent = 0;
    const tick = (): void => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * request.rate) / 1000) + 1);
      for (; sent < due; sent++) pending.push(send(sent, start + (sent * 1000) / request.rate));
      if (sent < total) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  await Promise.all(pending);
  await pool.close();
  latencies.sort();
  const at = (q: number): number => round(latencies[Math.min(total - 1, Math.floor(total * q))]!);
  return { requests: total, achieved: round((total - errors) / ((lastAnswer - start) / 1000)), p50Ms: at(0.5), p99Ms: at(0.99), maxMs: round(latencies[total - 1]!), errors };
}

const round = (v: number): number => Math.round(v * 100) / 100;

if (process.send) {
  process.once("message", (request: LoadRequest) => {
    void runLoad(request).then(
      (result) => process.send?.({ result }, () => process.exit(0)),
      (error: unknown) => process.send?.({ error: String(error) }, () => process.exit(1)),
    );
  });
}
