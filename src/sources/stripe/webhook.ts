/**
 * `POST /webhooks/stripe`: verify, store in the inbox, answer. Nothing else runs on the request
 * path (the inbox worker, src/sources/stripe/inbox.ts, does the work later). Events are stored
 * with those of concurrent requests in one INSERT when the database is busy (event-writer.ts).
 *
 * Answers
 * - 200 `{"received":true}` once the event is durably in `stripe_events`, also for a duplicate id
 *   (`"duplicate":true`, nothing written) and for a type the inbox does not act on (stored
 *   `ignored`: types the controller does not handle, and in payload mode invoices and checkouts).
 * - 400 `{"error":...}`: missing or invalid `Stripe-Signature` (checked against every configured
 *   secret; its timestamp within 300 s of now, in the past as in the future), a verified body
 *   that is not an event, or an event Postgres can never store (storable.ts; or a data
 *   exception from the insert itself). Nothing is written; the reason says what is wrong.
 * - 413 past `maxBodyBytes` (default 1 MiB): reading stops, the connection is closed.
 * - 503 with `Retry-After` when the database did not answer within `requestTimeoutMs`
 *   (DB_REQUEST_TIMEOUT, default 5 s: a frozen or partitioned database), so Stripe retries long
 *   before its own 10 s client timeout and no request holds a socket for longer.
 * - 500 when the insert failed in another way that can clear (connection refused, lock, disk), so
 *   Stripe retries.
 * Neither the secrets, the signature header nor any part of the payload are ever logged: a
 * Postgres error is logged by its SQLSTATE only (its message and detail may quote the payload).
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import Stripe from "stripe";

import { loggableError, sqlState } from "../../errors.ts";
import { isDatabaseTimeout } from "../../state/deadline.ts";
import type { Db } from "../../state/sql.ts";
import { isNeverStorable, StripeEventWriter } from "./event-writer.ts";
import { actedOnWithApi, eventTypeLabel, inboxRow, type StripeEventEnvelope, stripeEventSchema } from "./map.ts";
import type { StripeMetrics } from "./metrics.ts";
import { unstorableReason } from "./storable.ts";

/** The logger methods the Stripe source uses (pino's signature). */
export interface StripeLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface StripeWebhookDeps {
  readonly sql: Db;
  /** Every currently valid endpoint secret (`whsec_...`), for rotation. At least one. */
  readonly secrets: readonly string[];
  readonly maxBodyBytes?: number;
  readonly metrics: StripeMetrics;
  readonly logger: StripeLogger;
  readonly now?: () => Date;
  /** How long the insert may take before the answer is 503 (default 5 s). */
  readonly requestTimeoutMs?: number;
  /** Called after a new pending event is stored (e.g. `inbox.wake`), so the worker need not poll. */
  readonly onStored?: () => void;
  /**
   * Whether the inbox acts on events of a type (default: every handled type, as in API mode).
   * Payload mode passes `payloadHasState`: invoices and checkouts change nothing without an API
   * key, so they are stored `ignored` at once instead of read and marked handled later.
   */
  readonly actedOn?: (type: string) => boolean;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** Seconds Stripe (or any client) is asked to wait before retrying after a 503. */
const RETRY_AFTER_SECONDS = 10;
/** Stripe's default signature tolerance, applied to timestamps in the past and in the future. */
export const SIGNATURE_TOLERANCE_SECONDS = 300;

type Answer = { readonly code: number; readonly body: Record<string, unknown>; readonly close?: boolean; readonly retryAfter?: number };

export function createStripeWebhookHandler(deps: StripeWebhookDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const secrets = deps.secrets.map((s) => s.trim()).filter((s) => s.length > 0);
  if (secrets.length === 0) throw new Error("createStripeWebhookHandler: at least one webhook secret is required");
  const maxBodyBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const now = deps.now ?? (() => new Date());
  const requestTimeoutMs = deps.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const writer = new StripeEventWriter({ sql: deps.sql, timeoutMs: requestTimeoutMs });
  const resolved: ResolvedDeps = { ...deps, secrets, maxBodyBytes, now, writer, actedOn: deps.actedOn ?? actedOnWithApi };
  return async (req, res) => {
    const started = process.hrtime.bigint();
    let answer: Answer;
    try {
      answer = await answerRequest(req, resolved);
    } catch {
      answer = { code: 400, body: { error: "request body could not be read" }, close: true };
    }
    if (res.destroyed) return;
    const payload = JSON.stringify(answer.body);
    const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(payload) };
    if (answer.close) headers.connection = "close";
    if (answer.retryAfter !== undefined) headers["retry-after"] = answer.retryAfter;
    res.writeHead(answer.code, headers);
    res.end(payload, () => {
      if (answer.close) req.socket.destroy();
    });
    deps.metrics.webhookSeconds.observe({ code: String(answer.code) }, Number(process.hrtime.bigint() - started) / 1e9);
  };
}

type ResolvedDeps = StripeWebhookDeps & { secrets: readonly string[]; maxBodyBytes: number; now: () => Date; writer: StripeEventWriter; actedOn: (type: string) => boolean };

async function answerRequest(req: IncomingMessage, deps: ResolvedDeps): Promise<Answer> {
  const { metrics } = deps;
  if (req.method !== "POST") return { code: 405, body: { error: "use POST" } };
  const body = await readBody(req, deps.maxBodyBytes);
  if (body === null) {
    metrics.events.inc({ type: "unknown", result: "too_large" });
    return { code: 413, body: { error: `body larger than ${deps.maxBodyBytes} bytes` }, close: true };
  }
  const header = req.headers["stripe-signature"];
  if (typeof header !== "string" || header.length === 0) {
    metrics.events.inc({ type: "unknown", result: "invalid_signature" });
    return { code: 400, body: { error: "missing Stripe-Signature header" } };
  }
  // Decoded once, for the signature and the inbox row alike (stripe-node would decode a Buffer itself).
  const text = body.toString("utf8");
  const verified = verify({ body, text }, header, deps.secrets, deps.now());
  if (!verified.ok) {
    metrics.events.inc({ type: "unknown", result: verified.result });
    deps.logger.warn({ reason: verified.error }, "stripe webhook rejected");
    return { code: 400, body: { error: verified.error } };
  }
  return store(verified.event, text, deps);
}

type Verified = { ok: true; event: StripeEventEnvelope } | { ok: false; result: "invalid_signature" | "invalid_body"; error: string };

/**
 * Tries every secret; the signature may be at most the tolerance old (stripe-node checks that) or
 * ahead of our clock (checked here); the body must then be a snapshot event envelope (zod) that
 * Postgres can store.
 */
function verify({ body, text }: { body: Buffer; text: string }, header: string, secrets: readonly string[], now: Date): Verified {
  let reason = "no signature matches any configured secret";
  for (const secret of secrets) {
    let parsed: unknown;
    try {
      parsed = Stripe.webhooks.constructEvent(text, header, secret, SIGNATURE_TOLERANCE_SECONDS, undefined, now.getTime());
    } catch (thrown) {
      if (thrown instanceof Stripe.errors.StripeSignatureVerificationError) {
        if (/tolerance/i.test(thrown.message)) reason = `signature timestamp outside the ${SIGNATURE_TOLERANCE_SECONDS} s tolerance`;
        else if (/Unable to extract timestamp and signatures/i.test(thrown.message)) reason = "malformed Stripe-Signature header";
        continue;
      }
      return { ok: false, result: "invalid_body", error: "body is not a JSON Stripe event" };
    }
    if (signedAt(header) > now.getTime() / 1000 + SIGNATURE_TOLERANCE_SECONDS) {
      return { ok: false, result: "invalid_signature", error: `invalid signature: signature timestamp more than ${SIGNATURE_TOLERANCE_SECONDS} s in the future` };
    }
    const event = stripeEventSchema.safeParse(parsed);
    if (!event.success) return { ok: false, result: "invalid_body", error: `body is not a Stripe event: ${event.error.issues[0]?.message ?? "invalid"}` };
    const unstorable = unstorableReason(event.data, parsed, body);
    if (unstorable) return { ok: false, result: "invalid_body", error: `event can never be stored: ${unstorable}` };
    return { ok: true, event: event.data };
  }
  return { ok: false, result: "invalid_signature", error: `invalid signature: ${reason}` };
}

/** The `t=` of a Stripe-Signature header that stripe-node has already verified. */
function signedAt(header: string): number {
  const part = header.split(",").find((item) => item.trim().startsWith("t="));
  return Number(part?.trim().slice(2));
}

async function store(event: StripeEventEnvelope, payloadJson: string, deps: ResolvedDeps): Promise<Answer> {
  const type = eventTypeLabel(event.type);
  const row = inboxRow(event, payloadJson, deps.actedOn);
  const ignored = row.status === "ignored";
  try {
    const inserted = await deps.writer.store(row);
    const result = !inserted ? "duplicate" : ignored ? "ignored" : "received";
    deps.metrics.events.inc({ type, result });
    if (inserted && !ignored) deps.onStored?.();
    return { code: 200, body: inserted ? { received: true } : { received: true, duplicate: true } };
  } catch (thrown) {
    if (isDatabaseTimeout(thrown)) {
      deps.metrics.events.inc({ type, result: "store_failed" });
      deps.logger.error({ err: thrown, eventId: event.id, type: event.type }, "stripe event not stored: the database did not answer in time; answering 503 so Stripe retries");
      return { code: 503, body: { error: "database unavailable, retry later" }, retryAfter: RETRY_AFTER_SECONDS };
    }
    if (isNeverStorable(thrown)) {
      const code = sqlState(thrown);
      deps.metrics.events.inc({ type, result: "invalid_body" });
      deps.logger.warn({ eventId: event.id, type: event.type, code }, "stripe event refused: Postgres can never store it");
      return { code: 400, body: { error: `event can never be stored: Postgres refused it (SQLSTATE ${code})` } };
    }
    deps.metrics.events.inc({ type, result: "store_failed" });
    deps.logger.error({ err: loggableError(thrown), eventId: event.id, type: event.type }, "stripe event not stored: answering 500 so Stripe retries");
    return { code: 500, body: { error: "event not stored, retry later" } };
  }
}

/** The raw body, or null once it exceeds `limit` (reading stops there). */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | null> {
  const declared = Number(req.headers["content-length"] ?? "0");
  if (Number.isFinite(declared) && declared > limit) {
    req.pause();
    return Promise.resolve(null);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(Buffer.concat(chunks)));
    req.once("error", reject);
  });
}
