/**
 * The notifications outbox deliverer (any replica may run it; the queue is in
 * state/notifications.ts). With a Mailer it sends each due notification over SMTP with a stable
 * Message-ID; without one it writes each to the log (kind, subject, ids; never the recipient or
 * the body) and marks it sent, as before SMTP existed.
 *
 * Isolation: the loop runs on its own, holds no database connection or lock while a server is
 * talking, and bounds every send, so a slow or dead SMTP server delays only email.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";
import { Counter, Gauge, type Registry } from "prom-client";

import { createSmtpMailer, type Mailer,MailError } from "../drivers/mail/smtp.ts";
import type { Logger } from "../logger.ts";
import { type BackoffOptions, calculateDelay } from "../reconciler/backoff.ts";
import { claimDue, type ClaimedNotification, markFailed, markRetry, markSent, outboxSummary } from "../state/notifications.ts";
import { MAX_LINK_TTL_MS, signDownloadPath } from "./backup-links.ts";
import { type RenderContext, renderNotification } from "./messages.ts";

/** Kinds with their own label value; anything else is counted as `other`. */
export const NOTIFICATION_KINDS = ["welcome", "cancellation", "health_alert", "past_due", "stopped", "usage_limit", "operator_alert", "other"] as const;
/** The recipient of operator notifications: ALERT_EMAIL, resolved at delivery. */
export const OPERATOR_RECIPIENT = "operator";
export const NOTIFICATION_RESULTS = ["sent", "logged", "retry", "failed"] as const;
type Result = (typeof NOTIFICATION_RESULTS)[number];

export const MAX_ATTEMPTS = 8;

/** 1 min, ×3 per attempt, at most 2 h, ±50 %: 8 attempts span about 6 hours. */
export const OUTBOX_BACKOFF = { minDelayMs: 60_000, maxDelayMs: 7_200_000, multiplier: 3, jitter: 0.5 } as const satisfies BackoffOptions;

export interface OutboxMetrics {
  readonly notifications: Counter<"kind" | "result">;
  readonly pending: Gauge;
}

export function createOutboxMetrics(registry: Registry): OutboxMetrics {
  const registers = [registry];
  const metrics: OutboxMetrics = {
    notifications: new Counter({ name: "mindroom_notifications_total", help: "Notification delivery attempts that ended, by kind and result (sent, logged without SMTP, retry, failed)", labelNames: ["kind", "result"], registers }),
    pending: new Gauge({ name: "mindroom_notifications_pending", help: "Notifications neither sent nor failed yet", registers }),
  };
  for (const kind of NOTIFICATION_KINDS) for (const result of NOTIFICATION_RESULTS) metrics.notifications.inc({ kind, result }, 0);
  metrics.pending.set(0);
  return metrics;
}

export interface OutboxOptions {
  readonly sql: Sql;
  readonly logger: Pick<Logger, "info" | "warn">;
  readonly metrics: OutboxMetrics;
  /** Undefined: SMTP is off and notifications go to the log. */
  readonly mailer: Mailer | undefined;
  /** The right-hand side of every Message-ID (`<notification-ID@DOMAIN>`). */
  readonly messageIdDomain: string;
  readonly downloadLink: RenderContext["downloadLink"];
  /** GRACE_PERIOD, for the past-due warning. */
  readonly gracePeriodMs?: number;
  /** ALERT_EMAIL: where operator notifications go; undefined: they go to the log. */
  readonly alertEmail?: string | undefined;
  readonly now?: () => Date;
  readonly pollMs?: number;
  readonly batch?: number;
  /** How long a claim lasts; longer than `sendTimeoutMs`, so a live send is never claimed twice. */
  readonly leaseMs?: number;
  readonly sendTimeoutMs?: number;
  readonly backoff?: BackoffOptions;
}

const DEFAULTS = { pollMs: 10_000, batch: 20, leaseMs: 300_000, sendTimeoutMs: 120_000 } as const;
const DEFAULT_GRACE_MS = 7 * 86_400_000;

export function messageId(notificationId: string, domain: string): string {
  return `<notification-${notificationId}@${domain}>`;
}

/** Claims and delivers one batch; returns how many were claimed. */
export async function deliverBatch(options: OutboxOptions, signal: AbortSignal): Promise<number> {
  const claimed = await claimDue(options.sql, options.batch ?? DEFAULTS.batch, options.leaseMs ?? DEFAULTS.leaseMs);
  await Promise.all(claimed.map((n) => deliverOne(options, n, signal)));
  return claimed.length;
}

async function deliverOne(options: OutboxOptions, n: ClaimedNotification, signal: AbortSignal): Promise<void> {
  const kind = (NOTIFICATION_KINDS as readonly string[]).includes(n.kind) ? n.kind : "other";
  const where = { notification: n.id, kind: n.kind, attempt: n.attempts };
  const to = n.recipient === OPERATOR_RECIPIENT ? options.alertEmail : n.recipient;
  if (!options.mailer || to === undefined) {
    const why = options.mailer ? "ALERT_EMAIL is not set" : "SMTP_URL is not set";
    options.logger.info({ ...where, subject: n.subject }, `notification delivered to the log (${why})`);
    await markSent(options.sql, n.id);
    return count(options, kind, "logged");
  }
  const now = (options.now ?? (() => new Date()))();
  const rendered = renderNotification(n, { now, downloadLink: options.downloadLink, gracePeriodMs: options.gracePeriodMs ?? DEFAULT_GRACE_MS });
  try {
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(options.sendTimeoutMs ?? DEFAULTS.sendTimeoutMs)]);
    await options.mailer.send({ to, ...rendered, messageId: messageId(n.id, options.messageIdDomain) }, bounded);
  } catch (error) {
    return recordFailure(options, n, kind, error instanceof MailError ? error : new MailError("SMTP send failed (EABORT)", "retry", undefined));
  }
  await markSent(options.sql, n.id);
  options.logger.info(where, "notification sent");
  count(options, kind, "sent");
}

async function recordFailure(options: OutboxOptions, n: ClaimedNotification, kind: string, error: MailError): Promise<void> {
  const where = { notification: n.id, kind: n.kind, attempt: n.attempts, reply: error.responseCode };
  if (error.failure === "permanent" || n.attempts >= MAX_ATTEMPTS) {
    await markFailed(options.sql, n.id, error.message);
    options.logger.warn({ ...where, err: error.message }, "notification failed for good");
    return count(options, kind, "failed");
  }
  const delayMs = calculateDelay(n.attempts - 1, options.backoff ?? OUTBOX_BACKOFF);
  await markRetry(options.sql, n.id, delayMs, error.message);
  options.logger.warn({ ...where, err: error.message, retryInMs: delayMs }, "notification not delivered; will retry");
  count(options, kind, "retry");
}

function count(options: OutboxOptions, kind: string, result: Result): void {
  options.metrics.notifications.inc({ kind, result });
}

/** Resolves when `signal` aborts. Drains due notifications, then polls every `pollMs`. */
export async function runOutbox(options: OutboxOptions, signal: AbortSignal): Promise<void> {
  const batch = options.batch ?? DEFAULTS.batch;
  while (!signal.aborted) {
    try {
      while ((await deliverBatch(options, signal)) === batch && !signal.aborted);
      options.metrics.pending.set((await outboxSummary(options.sql)).pending);
    } catch (error) {
      options.logger.warn({ err: error }, "notification outbox failed; retrying");
    }
    await sleep(options.pollMs ?? DEFAULTS.pollMs, undefined, { signal }).catch(() => {});
  }
  options.mailer?.close();
}

export interface OutboxWiring {
  readonly sql: Sql;
  readonly logger: Pick<Logger, "info" | "warn">;
  readonly metrics: OutboxMetrics;
  readonly smtp: { readonly url: string; readonly from: string } | undefined;
  readonly baseDomain: string;
  readonly publicUrl: string | undefined;
  readonly masterKey: string;
  readonly alertEmail: string | undefined;
  readonly gracePeriodMs: number;
}

/** The outbox as configured: SMTP when set, the log otherwise; backup links when PUBLIC_URL is set. */
export function outboxOptions(wiring: OutboxWiring, overrides: Partial<OutboxOptions> = {}): OutboxOptions {
  const { publicUrl, masterKey } = wiring;
  return {
    sql: wiring.sql,
    logger: wiring.logger,
    metrics: wiring.metrics,
    mailer: wiring.smtp ? createSmtpMailer(wiring.smtp) : undefined,
    messageIdDomain: wiring.baseDomain,
    alertEmail: wiring.alertEmail,
    gracePeriodMs: wiring.gracePeriodMs,
    downloadLink: (backupId, now) => {
      if (!publicUrl) return undefined;
      const link = signDownloadPath(masterKey, backupId, now, MAX_LINK_TTL_MS);
      return { url: `${publicUrl}${link.path}`, expiresAt: link.expiresAt };
    },
    ...overrides,
  };
}
