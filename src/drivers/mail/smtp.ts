/**
 * Outgoing email over SMTP (nodemailer's pooled transport). One narrow interface, `Mailer`, so the
 * outbox does not know nodemailer; the SMTP URL (which carries credentials) never leaves this
 * file, and no error message it produces contains it. nodemailer is loaded on the first send or
 * verify, so a daemon without SMTP does not carry it (about 3 MB of heap).
 */
import type { Transporter } from "nodemailer";

/** One rendered message. `messageId` is stable per notification: a resend carries the same one. */
export interface OutgoingMail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly messageId: string;
}

/**
 * What a failed send means for the message. `retry`: the server could not be reached, dropped the
 * connection, timed out, or answered 4xx (try again later). `permanent`: a 5xx reply to this
 * message (the server will never accept it).
 */
export type SendFailure = "retry" | "permanent";

export class MailError extends Error {
  override readonly name = "MailError";
  constructor(
    message: string,
    readonly failure: SendFailure,
    readonly responseCode: number | undefined,
  ) {
    super(message);
  }
}

/** Blocks until the server accepted the message or the send failed (bounded by the timeouts). */
export interface Mailer {
  /** Resolves when the server accepted the message; rejects with MailError otherwise. */
  send(mail: OutgoingMail, signal: AbortSignal): Promise<void>;
  /** Connects, upgrades with STARTTLS and authenticates without sending; rejects with MailError. */
  verify(): Promise<void>;
  /** Closes pooled connections; a send in flight finishes first. Idempotent. */
  close(): void;
}

export interface SmtpOptions {
  /** smtp:// (STARTTLS when the server offers it) or smtps:// (TLS from the start), with credentials. */
  readonly url: string;
  readonly from: string;
  /** Connect, greeting and idle-socket timeout; a slow server fails the send instead of holding it. */
  readonly timeoutMs?: number;
  readonly maxConnections?: number;
  /** Test-only: accept the loopback server's self-signed certificate. */
  readonly tlsRejectUnauthorized?: boolean;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export function createSmtpMailer(options: SmtpOptions): Mailer {
  let transport: Promise<Transporter> | undefined;
  const open = (): Promise<Transporter> => (transport ??= openTransport(options));
  return {
    async send(mail, signal) {
      try {
        await (await open()).sendMail({ from: options.from, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html, messageId: mail.messageId, signal });
      } catch (error) {
        throw classify(error);
      }
    },
    async verify() {
      try {
        await (await open()).verify();
      } catch (error) {
        throw classify(error);
      }
    },
    close() {
      void transport?.then((opened) => opened.close(), () => {});
    },
  };
}

async function openTransport(options: SmtpOptions): Promise<Transporter> {
  const { createTransport } = await import("nodemailer");
  const timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return createTransport({
    url: options.url,
    pool: true,
    maxConnections: options.maxConnections ?? 2,
    connectionTimeout: timeout,
    greetingTimeout: timeout,
    socketTimeout: timeout,
    tls: { rejectUnauthorized: options.tlsRejectUnauthorized ?? true },
  });
}

/** Maps a nodemailer error to a MailError; the message names the code and reply, never the URL. */
export function classify(error: unknown): MailError {
  const { responseCode, code } = error as { responseCode?: unknown; code?: unknown };
  const reply = typeof responseCode === "number" ? responseCode : undefined;
  const what = typeof code === "string" ? code : "ESEND";
  // A 5xx authentication failure is the operator's configuration, not this message: retry, so
  // fixing SMTP_URL delivers it; every other 5xx is this message refused for good.
  const failure: SendFailure = reply !== undefined && reply >= 500 && what !== "EAUTH" ? "permanent" : "retry";
  const response = (error as { response?: unknown }).response;
  const detail = typeof response === "string" ? `: ${response.slice(0, 200)}` : "";
  return new MailError(`SMTP send failed (${what}${reply === undefined ? "" : ` ${reply}`})${detail}`, failure, reply);
}
