/**
 * A burst of 2,000 Stripe webhooks never costs the leader its lease (issue 19): the webhook inserts
 * through a pool of its own, so the lease renewal and the controller's writes keep connections.
 *
 * Deterministic on a shared 2-core machine: the database is made slow for the burst's inserts
 * (this test holds an EXCLUSIVE lock on stripe_events for several renew deadlines, as a database
 * under a heavy burst would be slow), so every webhook insert waits on its connection. With one
 * shared pool, every connection ends up waiting and the lease renewal queues behind them; the
 * leader then stops leading within its renew deadline (2 s here), whatever the CPU does.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { eventually } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

const SECRET = "whsec_burst_test";
const BURST = 2000;
/** LEADER_LEASE_TTL 3s: renew deadline 2 s, a lease call gives up after 1 s. */
const LEASE_TTL = "3s";
const SLOW_FOR_MS = 8_000;

let db: TestDatabase;
let dataDir: string;
let serve: ServeProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase({ max: 4 });
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-burst-"));
});

afterAll(async () => {
  serve?.kill("SIGKILL");
  await serve?.exited;
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

/** New sign-ups' customer.created events, signed like Stripe's. */
function signedEvents(n: number): { body: string; signature: string }[] {
  const sim = new StripeSim(() => Math.floor(Date.now() / 1000));
  while (sim.events.length < n) sim.createCustomer({ email: null });
  return sim.events.slice(0, n).map((event) => {
    const body = JSON.stringify(event);
    return { body, signature: Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET }) };
  });
}

async function lease(): Promise<{ holder: string; epoch: string; live: boolean }> {
  const [row] = await db.sql<{ holder: string; epoch: string; live: boolean }[]>`
    select holder, epoch::text as epoch, expires_at > now() as live from controller_leases where name = 'reconciler'`;
  return row!;
}

/** Connections of the daemon waiting for the lock this test holds. */
async function waitingInserts(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    select count(*)::int as n from pg_stat_activity
    where application_name like 'mindroom-reconciler:%' and wait_event_type = 'Lock' and query ilike '%stripe_events%'`;
  return row!.n;
}

describe("webhook burst", () => {
  test(`${BURST} webhooks at once, inserted slowly, never cost the lease`, async () => {
    // The inserts are held back 8 s on purpose (below): a request deadline above that, so every
    // webhook is stored; the deadline itself is tested in test/e2e/database-faults.test.ts.
    serve = startServe({ DATABASE_URL: db.url, DATA_DIR: dataDir, STRIPE_WEBHOOK_SECRET: SECRET, LEADER_LEASE_TTL: LEASE_TTL, DB_REQUEST_TIMEOUT: "30s" });
    const port = await serve.port;
    await eventually("the daemon leads", async () => (await serve!.leading()) === true, 60_000);
    const before = await lease();
    const events = signedEvents(BURST);

    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => (locked = resolve));
    const slow = db.sql.begin(async (tx) => {
      await tx`lock table stripe_events in exclusive mode`;
      locked();
      await released;
    });
    await lockHeld;
    const answers = Promise.all(
      events.map(async ({ body, signature }): Promise<number | string> => {
        try {
          const response = await fetch(`http://127.0.0.1:${port}/webhooks/stripe`, {
            method: "POST",
            headers: { "content-type": "application/json", "stripe-signature": signature },
            body,
            signal: AbortSignal.timeout(120_000),
          });
          await response.arrayBuffer();
          return response.status;
        } catch (error) {
          return String(error);
        }
      }),
    );
    try {
      // The burst has reached the database: its inserts (two at a time, each holding many
      // requests' events: src/sources/stripe/event-writer.ts) wait on the lock.
      await eventually("webhook inserts waiting", async () => (await waitingInserts()) >= 2, 60_000);
      const samples: (boolean | undefined)[] = [];
      for (const deadline = Date.now() + SLOW_FOR_MS; Date.now() < deadline; ) {
        samples.push(await serve.leading());
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      // Leading throughout, and /metrics (through the controller's pool) answered every time:
      // with one shared pool it stops answering (undefined) and the lease is lost.
      expect(samples.every((sample) => sample === true), JSON.stringify(samples)).toBe(true);
    } finally {
      release();
      await slow;
    }
    const statuses = await answers;
    expect(statuses.filter((status) => status !== 200)).toEqual([]);
    const [stored] = await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events`;
    expect(stored!.n).toBe(BURST);

    const after = await lease();
    expect(after).toEqual({ ...before, live: true });
    expect(serve.output()).not.toMatch(/leader election: (stopped leading|lease call failed)/);
  }, 240_000);
});
