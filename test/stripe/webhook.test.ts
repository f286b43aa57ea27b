import { request } from "node:http";

import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { payloadHasState } from "../../src/sources/stripe/apply.ts";
import { eventObject } from "../../src/sources/stripe/objects.ts";
import { createStripeWebhookHandler, type StripeLogger } from "../../src/sources/stripe/webhook.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { counterValue, newMetrics, OLD_SECRET, SECRET, startWebhookServer, type WebhookServer } from "./helpers.ts";

let db: TestDatabase;
let server: WebhookServer;
let seq = 0;

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startWebhookServer(db.sql, { maxBodyBytes: 64 * 1024 });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

const now = (): number => Math.floor(Date.now() / 1000);

function makeEvent(type = "customer.created", object: Record<string, unknown> = {}): Record<string, unknown> {
  seq += 1;
  return eventObject({ id: `evt_wh_${seq}`, type, created: now(), object: { id: `cus_wh_${seq}`, object: "customer", ...object } as never });
}

async function post(body: string, headers: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(server.url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function signed(body: string, secret = SECRET, timestamp = now()): Record<string, string> {
  return { "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp }) };
}

async function rowCount(): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`select count(*)::int as n from stripe_events`;
  return row!.n;
}

describe("POST /webhooks/stripe", () => {
  test("200 for a new event: stored pending with its keys", async () => {
    const event = makeEvent("customer.subscription.created", { object: "subscription", customer: "cus_owner" });
    const body = JSON.stringify(event);
    const res = await post(body, signed(body));
    expect(res).toEqual({ status: 200, json: { received: true } });
    const [row] = await db.sql`select type, status, object_id, customer_id, created, api_version from stripe_events where id = ${event.id as string}`;
    expect(row).toMatchObject({ type: "customer.subscription.created", status: "pending", customer_id: "cus_owner", api_version: "2026-10-28.endive" });
    expect(await counterValue(server.registry, { type: "customer.subscription.created", result: "received" })).toBe(1);
  });

  test("200 for a duplicate, and nothing changes", async () => {
    const event = makeEvent();
    const body = JSON.stringify(event);
    expect((await post(body, signed(body))).status).toBe(200);
    const [before] = await db.sql`select received_at, status, attempts from stripe_events where id = ${event.id as string}`;
    const count = await rowCount();
    const again = await post(body, signed(body));
    expect(again).toEqual({ status: 200, json: { received: true, duplicate: true } });
    const [after] = await db.sql`select received_at, status, attempts from stripe_events where id = ${event.id as string}`;
    expect(after).toEqual(before);
    expect(await rowCount()).toBe(count);
    expect(await counterValue(server.registry, { type: "customer.created", result: "duplicate" })).toBeGreaterThanOrEqual(1);
  });

  test("200 for a type the controller ignores, stored as ignored", async () => {
    const event = makeEvent("charge.succeeded", { object: "charge", customer: "cus_x" });
    const body = JSON.stringify(event);
    expect((await post(body, signed(body))).status).toBe(200);
    const [row] = await db.sql`select status, processed_at from stripe_events where id = ${event.id as string}`;
    expect(row?.status).toBe("ignored");
    expect(row?.processed_at).toBeInstanceOf(Date);
    expect(await counterValue(server.registry, { type: "other", result: "ignored" })).toBe(1);
  });

  test("payload mode (actedOn: payloadHasState): an invoice is stored ignored at once and wakes no one; a customer event is pending and wakes the inbox", async () => {
    let woken = 0;
    const payloadMode = await startWebhookServer(db.sql, { actedOn: payloadHasState, onStored: () => void (woken += 1) });
    try {
      const invoice = makeEvent("invoice.payment_failed", { object: "invoice", customer: "cus_payload" });
      const customer = makeEvent("customer.created");
      for (const event of [invoice, customer]) {
        const body = JSON.stringify(event);
        const res = await fetch(payloadMode.url, { method: "POST", headers: { "content-type": "application/json", ...signed(body) }, body });
        expect(res.status).toBe(200);
      }
      const rows = await db.sql<{ id: string; status: string; handled: boolean }[]>`
        select id, status, processed_at is not null as handled from stripe_events where id in ${db.sql([invoice.id as string, customer.id as string])} order by id`;
      expect(rows).toEqual(
        [
          { id: invoice.id, status: "ignored", handled: true },
          { id: customer.id, status: "pending", handled: false },
        ].sort((a, b) => String(a.id).localeCompare(String(b.id))),
      );
      expect(woken).toBe(1);
      expect(await counterValue(payloadMode.registry, { type: "invoice.payment_failed", result: "ignored" })).toBe(1);
      expect(await counterValue(payloadMode.registry, { type: "customer.created", result: "received" })).toBe(1);
    } finally {
      await payloadMode.close();
    }
  });

  test("rotation: the old secret and the new one are both accepted, also as two v1 values", async () => {
    const a = JSON.stringify(makeEvent());
    expect((await post(a, signed(a, OLD_SECRET))).status).toBe(200);
    const b = JSON.stringify(makeEvent());
    const t = now();
    const good = Stripe.webhooks.generateTestHeaderString({ payload: b, secret: SECRET, timestamp: t });
    const wrong = Stripe.webhooks.generateTestHeaderString({ payload: b, secret: "whsec_other", timestamp: t });
    const header = `t=${t},${wrong.split(",")[1]},${good.split(",")[1]}`;
    expect((await post(b, { "stripe-signature": header })).status).toBe(200);
  });

  test("400 for a missing, wrong, tampered or stale signature; nothing written", async () => {
    const count = await rowCount();
    const body = JSON.stringify(makeEvent());
    const missing = await post(body, {});
    expect(missing).toEqual({ status: 400, json: { error: "missing Stripe-Signature header" } });
    expect((await post(body, signed(body, "whsec_wrong"))).json.error).toMatch(/invalid signature/);
    expect((await post(body.replace("customer", "custard"), signed(body))).status).toBe(400);
    const stale = await post(body, signed(body, SECRET, now() - 400));
    expect(stale).toEqual({ status: 400, json: { error: "invalid signature: signature timestamp outside the 300 s tolerance" } });
    expect((await post(body, { "stripe-signature": "garbage" })).status).toBe(400);
    expect(await rowCount()).toBe(count);
    expect(await counterValue(server.registry, { type: "unknown", result: "invalid_signature" })).toBeGreaterThanOrEqual(5);
  });

  test("400 for a correctly signed body that is not an event", async () => {
    const count = await rowCount();
    const notJson = "this is not json";
    expect(await post(notJson, signed(notJson))).toEqual({ status: 400, json: { error: "body is not a JSON Stripe event" } });
    const notEvent = JSON.stringify({ id: "evt_x", object: "charge" });
    const res = await post(notEvent, signed(notEvent));
    expect(res.status).toBe(400);
    expect(res.json.error).toMatch(/not a Stripe event/);
    expect(await rowCount()).toBe(count);
  });

  test("413 past the size limit, by Content-Length or by streamed bytes", async () => {
    const big = "x".repeat(70 * 1024);
    const declared = await post(big, signed(big));
    expect(declared.status).toBe(413);
    const streamed = await new Promise<number>((resolve, reject) => {
      const req = request(server.url, { method: "POST", headers: { "transfer-encoding": "chunked", "stripe-signature": "t=1,v1=x" } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      for (let i = 0; i < 5; i++) req.write("y".repeat(16 * 1024));
      req.end();
    });
    expect(streamed).toBe(413);
    expect(await counterValue(server.registry, { type: "unknown", result: "too_large" })).toBe(2);
  });

  test("405 for another method", async () => {
    const res = await fetch(server.url, { method: "GET" });
    expect(res.status).toBe(405);
  });

  test("500 when the database is unreachable, so Stripe retries; secrets and signatures never logged", async () => {
    const gone = await createTestDatabase({ max: 1 });
    await gone.drop();
    const lines: string[] = [];
    const capture: StripeLogger = {
      info: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
      warn: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
      error: (o, m) => lines.push(JSON.stringify({ ...o, err: String((o as { err?: unknown }).err) }) + (m ?? "")),
      debug: (o, m) => lines.push(JSON.stringify(o) + (m ?? "")),
    };
    const broken = await startWebhookServer(gone.sql, { logger: capture });
    try {
      const body = JSON.stringify(makeEvent());
      const headers = signed(body);
      const res = await fetch(broken.url, { method: "POST", headers, body });
      expect(res.status).toBe(500);
      expect(await res.json()).toEqual({ error: "event not stored, retry later" });
      const bad = await fetch(broken.url, { method: "POST", headers: signed(body, "whsec_wrong"), body });
      expect(bad.status).toBe(400);
      const text = lines.join("\n");
      expect(text).toMatch(/not stored/);
      expect(text).not.toContain(SECRET);
      expect(text).not.toContain(OLD_SECRET);
      expect(text).not.toContain(headers["stripe-signature"]!.split("v1=")[1]);
    } finally {
      await broken.close();
    }
  });

  test("refuses to start without a secret", () => {
    expect(() => createStripeWebhookHandler({ sql: db.sql, secrets: [" "], metrics: newMetrics().metrics, logger: { info() {}, warn() {}, error() {}, debug() {} } })).toThrow(/secret/);
  });
});
