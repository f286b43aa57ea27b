/**
 * The webhook benchmark's load generator, in a process of its own (forked by bench/webhook.ts) so
 * that it never shares an event loop with a server it measures.
 *
 * Open loop at a fixed rate (open-loop.ts), after an optional unmeasured lead-in. Each
 * request is a distinct event (StripeSim sign-ups whose first payment fails: customer,
 * subscription and invoice events that the inbox worker applies in full, without asking the
 * controller to provision anything), signed just before it is sent. undici's Pool keeps the
 * connections; a request unanswered after 10 s (Stripe's own timeout) counts as an error.
 */
import Stripe from "stripe";
import { Pool } from "undici";

import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { serveOverIpc } from "./child-process.ts";
import { type LoadSamples, openLoopSamples } from "./open-loop.ts";

export interface LoadRequest {
  readonly url: string;
  readonly rate: number;
  readonly seconds: number;
  readonly secret: string;
  /** Unmeasured seconds at `rate` before the measured ones (open-loop.ts `leadInSeconds`). */
  readonly leadInSeconds?: number;
}

export type { LoadSamples };

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

export async function runLoad(request: LoadRequest): Promise<LoadSamples> {
  const url = new URL(request.url);
  const pool = new Pool(url.origin, { connections: CONNECTIONS, pipelining: 1, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  const nextBody = eventBodies();
  try {
    return await openLoopSamples(request.rate, request.seconds, async () => {
      const body = nextBody();
      const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: request.secret });
      const res = await pool.request({ path: url.pathname, method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body });
      await res.body.dump();
      return res.statusCode === 200;
    }, { leadInSeconds: request.leadInSeconds ?? 0 });
  } finally {
    await pool.close();
  }
}

serveOverIpc(runLoad);
