/**
 * The webhook's group commit (src/sources/stripe/event-writer.ts) against a real Postgres: what
 * arrives together is stored in few INSERTs, each answer says new or duplicate, a row Postgres
 * refuses fails alone, and a database that does not answer costs each row its deadline, never a
 * row sent after it.
 */
import postgres from "postgres";
import { describe, expect, test } from "vitest";

import { isNeverStorable, StripeEventWriter } from "../../src/sources/stripe/event-writer.ts";
import { inboxRow, stripeEventSchema } from "../../src/sources/stripe/map.ts";
import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { DatabaseTimeoutError } from "../../src/state/deadline.ts";
import { insertStripeEvents, type NewStripeEvent } from "../../src/state/stripe-events.ts";
import type { TestDatabase } from "../helpers/db.ts";
import { inboxDatabasePerFile } from "./helpers.ts";


let db: TestDatabase;
inboxDatabasePerFile((created) => (db = created));

/** `n` distinct customer.created events as the webhook stores them. */
function rows(n: number): NewStripeEvent[] {
  const sim = new StripeSim(() => Math.floor(Date.now() / 1000));
  for (let i = 0; i < n; i++) sim.createCustomer({ email: `writer-${i}@example.com` });
  return sim.events.slice(0, n).map((raw) => inboxRow(stripeEventSchema.parse(raw), JSON.stringify(raw)));
}

const storedIds = async (): Promise<string[]> => (await db.sql<{ id: string }[]>`select id from stripe_events order by id`).map((row) => row.id);

describe("StripeEventWriter", () => {
  test("200 events stored at once go in a few INSERTs; each is stored once, with its columns", async () => {
    const inserts: string[] = [];
    const watched = postgres(db.url, { max: 4, onnotice: () => {}, debug: (_connection, query) => void (query.trim().startsWith("insert") && inserts.push(query)) });
    try {
      const writer = new StripeEventWriter({ sql: watched, timeoutMs: 10_000 });
      const events = rows(200);
      const answers = await Promise.all(events.map((row) => writer.store(row)));
      expect(answers.every((isNew) => isNew)).toBe(true);
      expect(inserts.length).toBeGreaterThanOrEqual(1);
      expect(inserts.length).toBeLessThanOrEqual(3); // one now, then what queued behind the (at most 2) in flight
      expect(await storedIds()).toEqual(events.map((row) => row.id).sort());
      const [first] = await db.sql<{ type: string; customer_id: string; status: string; created: Date; payload: { id: string }; processed_at: Date | null }[]>`
        select type, customer_id, status, created, payload, processed_at from stripe_events where id = ${events[0]!.id}`;
      expect(first).toEqual({ type: "customer.created", customer_id: events[0]!.customerId, status: "pending", created: events[0]!.created, payload: JSON.parse(events[0]!.payloadJson), processed_at: null });
      const payloads = await db.sql<{ id: string; payload: unknown }[]>`select id, payload from stripe_events`;
      expect(new Map(payloads.map((row) => [row.id, row.payload]))).toEqual(new Map(events.map((row) => [row.id, JSON.parse(row.payloadJson)])));
    } finally {
      await watched.end();
    }
  });

  test("a duplicate is answered false, whether stored before or twice in one batch", async () => {
    const writer = new StripeEventWriter({ sql: db.sql, timeoutMs: 10_000 });
    const [a, b] = rows(2);
    expect(await writer.store(a!)).toBe(true);
    const answers = await Promise.all([writer.store(a!), writer.store(b!), writer.store(b!)]);
    expect(answers).toEqual([false, true, false]);
    expect(await storedIds()).toEqual([a!.id, b!.id].sort());
  });

  test("an event type the controller ignores is stored `ignored` with its processed_at", async () => {
    const writer = new StripeEventWriter({ sql: db.sql, timeoutMs: 10_000 });
    const [row] = rows(1);
    await writer.store({ ...row!, type: "charge.succeeded", status: "ignored" });
    const [stored] = await db.sql<{ status: string; done: boolean }[]>`select status, processed_at is not null as done from stripe_events`;
    expect(stored).toEqual({ status: "ignored", done: true });
  });

  test("a row Postgres refuses fails alone, as never storable; the others of its batch are stored", async () => {
    const writer = new StripeEventWriter({ sql: db.sql, timeoutMs: 10_000 });
    const events = rows(5);
    const refused = { ...events[2]!, created: new Date(8.64e15) }; // year 275760: timestamptz out of range
    const answers = await Promise.allSettled(events.map((row, i) => writer.store(i === 2 ? refused : row)));
    expect(answers.map((answer) => answer.status)).toEqual(["fulfilled", "fulfilled", "rejected", "fulfilled", "fulfilled"]);
    expect(isNeverStorable((answers[2] as PromiseRejectedResult).reason)).toBe(true);
    expect(await storedIds()).toEqual(events.filter((_, i) => i !== 2).map((row) => row.id).sort());
  });

  test("a payload that is not JSON fails alone, as never storable", async () => {
    const writer = new StripeEventWriter({ sql: db.sql, timeoutMs: 10_000 });
    const events = rows(3);
    const answers = await Promise.allSettled(events.map((row, i) => writer.store(i === 1 ? { ...row, payloadJson: '{"id": ' } : row)));
    expect(answers.map((answer) => answer.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(isNeverStorable((answers[1] as PromiseRejectedResult).reason)).toBe(true);
    expect(await storedIds()).toEqual([events[0]!.id, events[2]!.id].sort());
  });

  test("a payload of two JSON values is refused whole: no payload is stored under another event's id", async () => {
    const [a, b] = rows(2);
    const twoValues = { ...a!, payloadJson: `${b!.payloadJson},${a!.payloadJson}` };
    await expect(insertStripeEvents(db.sql, [twoValues, b!])).rejects.toThrow(/null value/);
    await expect(insertStripeEvents(db.sql, [twoValues])).rejects.toThrow(/null value/);
    expect(await storedIds()).toEqual([]);
  });

  test("a database that does not answer: every row fails at its deadline, a row still queued then is never sent, and the writer recovers", async () => {
    const writer = new StripeEventWriter({ sql: db.sql, timeoutMs: 400, maxInFlight: 1, maxBatch: 1 });
    const [sent, next, queued, later] = rows(4);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const lockHeld = new Promise<void>((resolve) => (locked = resolve));
    const blocker = postgres(db.url, { max: 1, onnotice: () => {} });
    const holding = blocker.begin(async (tx) => {
      await tx`lock table stripe_events in exclusive mode`;
      locked();
      await released;
    });
    try {
      await lockHeld;
      const started = performance.now();
      const first = writer.store(sent!); // sent at once; waits on the lock
      await new Promise((resolve) => setTimeout(resolve, 200));
      // One slot, one row per batch: `next` goes when `sent` gives up (at 400 ms) and holds the
      // slot past 600 ms, when `queued`, never sent, reaches its deadline.
      const answers = await Promise.allSettled([first, writer.store(next!), writer.store(queued!)]);
      expect(performance.now() - started).toBeLessThan(3_000);
      for (const answer of answers) expect((answer as PromiseRejectedResult).reason).toBeInstanceOf(DatabaseTimeoutError);
    } finally {
      release();
      await holding;
      await blocker.end();
    }
    expect(await writer.store(later!)).toBe(true);
    const stored = await storedIds();
    // What was sent may commit once the lock goes (Stripe's retry is then a duplicate); `queued` was never sent.
    expect(stored).toContain(sent!.id);
    expect(stored).toContain(later!.id);
    expect(stored).not.toContain(queued!.id);
    expect(await writer.store(sent!)).toBe(false);
  });
});
