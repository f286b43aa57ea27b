/**
 * Issue 11: the outbox against a real SMTP server on loopback. Exactly once when the server
 * behaves; at least once, with the same Message-ID, when it drops after DATA; `failed` after the
 * attempts otherwise; and no database connection is held while a server stalls.
 */
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";

import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import { createSmtpMailer, type Mailer } from "../../src/drivers/mail/smtp.ts";
import { createOutboxMetrics, deliverBatch, MAX_ATTEMPTS, type OutboxOptions } from "../../src/runtime/outbox.ts";
import { outboxSummary } from "../../src/state/notifications.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { createInstance } from "../sql/support.ts";
import { startSmtpServer, type TestSmtpServer } from "./smtp-server.ts";

const QUIET = { info: () => {}, warn: () => {} };
/** Retries due at once, so a test can run attempt after attempt. */
const NO_WAIT = { minDelayMs: 1, maxDelayMs: 2, multiplier: 1, jitter: 0 };

let db: TestDatabase;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  // One connection: if a send held it, every other query here would stall behind the server.
  db = await createTestDatabase({ max: 1 });
});

afterAll(async () => {
  await db?.drop();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await db.sql`update notifications set failed_at = now() where sent_at is null and failed_at is null`;
});

async function queue(count: number, kind = "welcome"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const c = await createInstance(db.sql);
    await db.sql`update instances set frontend_url = ${`https://t${i}.mindroom.test`} where id = ${c.instanceId}`;
    const [row] = await db.sql<{ id: string }[]>`
      insert into notifications (account_id, instance_id, kind, dedupe_key, recipient, subject, body)
      select a.id, ${c.instanceId}, ${kind}, ${`${kind}:${c.instanceId}`}, a.email, 'Your MindRoom instance is ready', 'ready'
        from accounts a where a.id = ${c.accountId} returning id::text as id`;
    ids.push(row!.id);
  }
  return ids;
}

function options(mailer: Mailer | undefined, registry = new Registry()): OutboxOptions {
  return { sql: db.sql, logger: QUIET, metrics: createOutboxMetrics(registry), mailer, messageIdDomain: "mindroom.test", downloadLink: () => undefined, backoff: NO_WAIT, sendTimeoutMs: 2_000 };
}

async function server(...args: Parameters<typeof startSmtpServer>): Promise<TestSmtpServer> {
  const s = await startSmtpServer(...args);
  cleanups.push(() => s.close());
  return s;
}

function mailer(url: string, timeoutMs = 2_000): Mailer {
  const m = createSmtpMailer({ url, from: "MindRoom <noreply@mindroom.test>", timeoutMs, tlsRejectUnauthorized: false });
  cleanups.push(() => m.close());
  return m;
}

async function states(ids: string[]): Promise<{ sent: number; failed: number; attempts: number[] }> {
  const rows = await db.sql<{ sent: boolean; failed: boolean; attempts: number }[]>`
    select sent_at is not null as sent, failed_at is not null as failed, attempts from notifications where id in ${db.sql(ids)} order by id`;
  return { sent: rows.filter((r) => r.sent).length, failed: rows.filter((r) => r.failed).length, attempts: rows.map((r) => r.attempts) };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("SMTP delivery from the outbox", () => {
  test("AUTH over STARTTLS: every queued message arrives exactly once, text and HTML, with a Message-ID from its id", async () => {
    const smtp = await server({ kind: "accept" });
    const ids = await queue(3);
    const o = options(mailer(smtp.url));
    expect(await deliverBatch(o, new AbortController().signal)).toBe(3);
    expect(await deliverBatch(o, new AbortController().signal)).toBe(0);
    expect(smtp.received).toHaveLength(3);
    expect(smtp.received.map((r) => r.messageId).sort()).toEqual(ids.map((id) => `<notification-${id}@mindroom.test>`).sort());
    for (const r of smtp.received) {
      expect(r.secure, "STARTTLS was used before AUTH").toBe(true);
      expect(r.user).toBe("mailer");
      expect(r.text).toContain("https://t");
      expect(r.html).toContain('<a href="https://t');
    }
    expect(await states(ids)).toEqual({ sent: 3, failed: 0, attempts: [1, 1, 1] });
  });

  test("wrong credentials are retried, not delivered", async () => {
    const smtp = await server({ kind: "accept" });
    const [id] = await queue(1);
    await deliverBatch(options(mailer(smtp.url.replace("s3cret-pass", "wrong"))), new AbortController().signal);
    expect(smtp.received).toHaveLength(0);
    const [row] = await db.sql<{ last_error: string; sent_at: Date | null; failed_at: Date | null }[]>`select last_error, sent_at, failed_at from notifications where id = ${id!}`;
    expect(row).toMatchObject({ sent_at: null, failed_at: null });
    expect(row!.last_error).toMatch(/EAUTH 535/);
    expect(row!.last_error).not.toContain("wrong");
  });

  test("a server that answers 4xx and then accepts: delivered once, on the second attempt", async () => {
    const smtp = await server({ kind: "reply", code: 451, times: 1 }, { auth: false });
    const ids = await queue(1);
    const registry = new Registry();
    const o = options(mailer(smtp.url), registry);
    await deliverBatch(o, new AbortController().signal);
    expect(await states(ids)).toEqual({ sent: 0, failed: 0, attempts: [1] });
    await pause(10);
    await deliverBatch(o, new AbortController().signal);
    expect(smtp.received).toHaveLength(1);
    expect(await states(ids)).toEqual({ sent: 1, failed: 0, attempts: [2] });
    const text = await registry.metrics();
    expect(text).toContain('mindroom_notifications_total{kind="welcome",result="retry"} 1');
    expect(text).toContain('mindroom_notifications_total{kind="welcome",result="sent"} 1');
  });

  test("a server that drops the connection after DATA: received again with the same Message-ID", async () => {
    const smtp = await server({ kind: "drop-after-data", times: 1 }, { auth: false });
    const [id] = await queue(1);
    const o = options(mailer(smtp.url));
    await deliverBatch(o, new AbortController().signal);
    await pause(10);
    await deliverBatch(o, new AbortController().signal);
    expect(smtp.received.length).toBeGreaterThanOrEqual(2);
    expect(new Set(smtp.received.map((r) => r.messageId))).toEqual(new Set([`<notification-${id}@mindroom.test>`]));
    expect(await states([id!])).toMatchObject({ sent: 1, failed: 0 });
  });

  test("a server that drops the connection mid-DATA: nothing received then, delivered once on the retry", async () => {
    const smtp = await server({ kind: "drop-mid-data", times: 1 }, { auth: false });
    const [id] = await queue(1);
    const o = options(mailer(smtp.url));
    await deliverBatch(o, new AbortController().signal);
    expect(smtp.received).toHaveLength(0);
    expect(await states([id!])).toMatchObject({ sent: 0, failed: 0, attempts: [1] });
    await pause(10);
    await deliverBatch(o, new AbortController().signal);
    expect(smtp.received.map((r) => r.messageId)).toEqual([`<notification-${id}@mindroom.test>`]);
    expect(await states([id!])).toMatchObject({ sent: 1, failed: 0, attempts: [2] });
  });

  test("a 5xx reply fails the message at once", async () => {
    const smtp = await server({ kind: "reply", code: 550, times: 99 }, { auth: false });
    const ids = await queue(1);
    await deliverBatch(options(mailer(smtp.url)), new AbortController().signal);
    expect(await states(ids)).toEqual({ sent: 0, failed: 1, attempts: [1] });
    expect((await outboxSummary(db.sql)).lastFailure?.error).toMatch(/550/);
  });

  test(`a server that is down: marked failed after ${MAX_ATTEMPTS} attempts`, async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const ids = await queue(2);
    const o = options(mailer(`smtp://127.0.0.1:${port}`));
    for (let attempt = 0; attempt < MAX_ATTEMPTS + 2; attempt++) {
      await deliverBatch(o, new AbortController().signal);
      await pause(5);
    }
    expect(await states(ids)).toEqual({ sent: 0, failed: 2, attempts: [MAX_ATTEMPTS, MAX_ATTEMPTS] });
    expect((await outboxSummary(db.sql)).failed).toBeGreaterThanOrEqual(2);
  });

  test("a server that never answers holds no database connection: other queries run meanwhile", async () => {
    const silent = createServer(() => {}); // accepts, never greets
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    cleanups.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    const port = (silent.address() as AddressInfo).port;
    const ids = await queue(1);
    const sending = deliverBatch(options(mailer(`smtp://127.0.0.1:${port}`, 1_500)), new AbortController().signal);
    let settled = false;
    void sending.finally(() => (settled = true));
    await pause(200);
    // The pool has one connection; these would wait for the send if it held it.
    for (let i = 0; i < 5; i++) await db.sql`select 1`;
    const [claimed] = await db.sql<{ claimed: boolean }[]>`select claimed_until > now() as claimed from notifications where id = ${ids[0]!}`;
    expect(claimed?.claimed, "the row is claimed while the send is in flight").toBe(true);
    expect(settled, "the queries finished while the send was still waiting on the server").toBe(false);
    await sending;
    expect(await states(ids)).toEqual({ sent: 0, failed: 0, attempts: [1] });
  });
});

test("without SMTP the outbox logs and marks each notification sent once", async () => {
  const ids = await queue(2);
  const lines: unknown[] = [];
  const o = { ...options(undefined), logger: { info: (fields: unknown) => void lines.push(fields), warn: () => {} } };
  await deliverBatch(o, new AbortController().signal);
  await deliverBatch(o, new AbortController().signal);
  expect(await states(ids)).toEqual({ sent: 2, failed: 0, attempts: [1, 1] });
  expect(lines).toHaveLength(2);
  expect(JSON.stringify(lines)).not.toContain("@example.com");
});

test("operator notifications go to ALERT_EMAIL, and to the log when it is not set", async () => {
  const smtp = await server({ kind: "accept" });
  const queueOperator = async (key: string): Promise<string> => {
    const [row] = await db.sql<{ id: string }[]>`
      insert into notifications (kind, dedupe_key, recipient, subject, body)
      values ('operator_alert', ${key}, 'operator', 'MindRoom: a backup failed', 'host unreachable') returning id::text as id`;
    return row!.id;
  };
  const first = await queueOperator(`operator:test:${crypto.randomUUID()}`);
  await deliverBatch({ ...options(mailer(smtp.url)), alertEmail: "ops@mindroom.test" }, new AbortController().signal);
  expect(smtp.received.map((m) => [m.to, m.subject])).toEqual([["ops@mindroom.test", "MindRoom: a backup failed"]]);
  expect(await states([first])).toEqual({ sent: 1, failed: 0, attempts: [1] });
  const second = await queueOperator(`operator:test:${crypto.randomUUID()}`);
  await deliverBatch(options(mailer(smtp.url)), new AbortController().signal);
  expect(smtp.received, "no ALERT_EMAIL: logged, not sent anywhere").toHaveLength(1);
  expect(await states([second])).toEqual({ sent: 1, failed: 0, attempts: [1] });
});
