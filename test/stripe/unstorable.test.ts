/**
 * Signed events Postgres can never store get 400 with a reason and nothing stored (not 500, which
 * Stripe would retry for three days); failures that can clear keep 500; and no fragment of the
 * payload (here, a customer's email) ever reaches the log. Real HTTP, real Postgres.
 */
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { eventObject } from "../../src/sources/stripe/objects.ts";
import { MAX_PAYLOAD_DEPTH, unstorableReason } from "../../src/sources/stripe/storable.ts";
import type { StripeLogger } from "../../src/sources/stripe/webhook.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { SECRET, startWebhookServer, type WebhookServer } from "./helpers.ts";

const EMAIL = "private.customer@example.com";

let db: TestDatabase;
let server: WebhookServer;
const lines: string[] = [];
let seq = 0;

const capture: StripeLogger = {
  info: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
  warn: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
  error: (o, m) => lines.push(JSON.stringify({ ...o, err: serialise((o as { err?: unknown }).err) }) + (m ?? "")),
  debug: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
};

/** Everything pino's error serialiser would print: message, stack and enumerable fields. */
function serialise(err: unknown): unknown {
  return err instanceof Error ? { ...err, message: err.message, stack: err.stack } : err;
}

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startWebhookServer(db.sql, { logger: capture });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const now = (): number => Math.floor(Date.now() / 1000);

/** A customer event whose body is built by hand, so it can carry what JSON.stringify never writes. */
function customerBody(fields: string, created = String(now())): { id: string; body: string } {
  seq += 1;
  const id = `evt_unstorable_${seq}`;
  const event = eventObject({ id, type: "customer.updated", created: now(), object: { id: `cus_unstorable_${seq}`, object: "customer", email: EMAIL } as never });
  const json = JSON.stringify(event).replace(/"created":\d+/, `"created":${created}`);
  return { id, body: json.replace(`"email":"${EMAIL}"`, `"email":"${EMAIL}",${fields}`) };
}

async function post(body: string, timestamp = now()): Promise<{ status: number; json: { error?: string } }> {
  const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET, timestamp });
  const res = await fetch(server.url, { method: "POST", headers: { "content-type": "application/json", "stripe-signature": signature }, body });
  return { status: res.status, json: (await res.json()) as { error?: string } };
}

async function stored(id: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events where id = ${id}`;
  return row!.n;
}

const deep = (levels: number): string => `"deep":${"[".repeat(levels)}${"]".repeat(levels)}`;

const CASES: Record<string, { reason: string; fields?: string; created?: string; want: RegExp }> = {
  nul: { reason: "jsonb text cannot hold \\u0000", fields: `"name":"Ann\\u0000Lee"`, want: /payload \$\.data\.object\.name contains a NUL character/ },
  "nul in a key": { reason: "keys are text too", fields: `"metadata":{"a\\u0000b":"x"}`, want: /payload key in \$\.data\.object\.metadata contains a NUL character/ },
  "lone surrogate": { reason: "\\ud800 alone is not Unicode; jsonb refuses it", fields: `"name":"\\ud800"`, want: /payload \$\.data\.object\.name contains an unpaired UTF-16 surrogate/ },
  "year 10000": { reason: "no ISO timestamp Postgres parses", created: "253402300800", want: /event created is not a time Postgres can store/ },
  "2^53-1": { reason: "no date at all", created: "9007199254740991", want: /event created is not a time Postgres can store/ },
  "20,000-deep nesting": { reason: "Postgres's parser hits its stack depth limit", fields: deep(20_000), want: new RegExp(`payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`) },
};

describe("signed events Postgres can never store", () => {
  for (const [name, tc] of Object.entries(CASES)) {
    test(`${name}: 400 with a reason, nothing stored, no payload in the log`, async () => {
      const { id, body } = customerBody(tc.fields ?? `"note":"ok"`, tc.created);
      const res = await post(body);
      expect(res.status, tc.reason).toBe(400);
      expect(res.json.error).toMatch(/^event can never be stored: /);
      expect(res.json.error).toMatch(tc.want);
      expect(res.json.error).not.toContain(EMAIL);
      expect(await stored(id)).toBe(0);
      expect(lines.join("\n")).not.toContain(EMAIL);
    });

    test(`${name}: Postgres itself refuses it (the check is not stricter than the database)`, async () => {
      const { id, body } = customerBody(tc.fields ?? `"note":"ok"`, tc.created);
      const parsed = JSON.parse(body) as { created: number };
      expect(unstorableReason(parsed, parsed)).toMatch(tc.want);
      const created = new Date(parsed.created * 1000);
      const insert = (async () => {
        const when = created.toISOString(); // throws for 2^53-1: not a date
        await db.sql`insert into stripe_events (id, type, created, payload, status) values (${id}, 'customer.updated', ${when}, ${body}::text::jsonb, 'pending')`;
      })();
      await expect(insert).rejects.toThrow();
    });
  }

  test("what only the insert finds (a number past numeric's range) is still 400: a data exception never clears", async () => {
    const { id, body } = customerBody(`"balance":1e1000000`);
    const res = await post(body);
    expect(res.status).toBe(400);
    expect(res.json.error).toBe("event can never be stored: Postgres refused it (SQLSTATE 22003)");
    expect(await stored(id)).toBe(0);
    expect(lines.join("\n")).not.toContain(EMAIL);
  });

  test("a storable event with the same shape is stored (200)", async () => {
    const { id, body } = customerBody(`"name":"Ann Lee 🚀",${deep(MAX_PAYLOAD_DEPTH - 5)}`);
    expect((await post(body)).status).toBe(200);
    expect(await stored(id)).toBe(1);
  });

  test("a signature timestamp too far in the future is refused like one too far in the past", async () => {
    const future = customerBody(`"note":"future"`);
    const res = await post(future.body, now() + 400);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/signature timestamp more than 300 s in the future/);
    expect(await stored(future.id)).toBe(0);
    const past = customerBody(`"note":"past"`);
    expect((await post(past.body, now() - 400)).status).toBe(400);
    const skewed = customerBody(`"note":"skewed"`);
    expect((await post(skewed.body, now() + 200)).status).toBe(200);
  });

  test("a failure that can clear still answers 500, and its log carries no payload", async () => {
    const gone = await createTestDatabase({ max: 1 });
    await gone.drop();
    const broken = await startWebhookServer(gone.sql, { logger: capture });
    try {
      const { body } = customerBody(`"note":"retry me"`);
      const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret: SECRET, timestamp: now() });
      const res = await fetch(broken.url, { method: "POST", headers: { "stripe-signature": signature }, body });
      expect(res.status).toBe(500);
      expect(lines.join("\n")).toMatch(/not stored/);
      expect(lines.join("\n")).not.toContain(EMAIL);
    } finally {
      await broken.close();
    }
  });
});
