/**
 * A real SMTP server on loopback (the `smtp-server` package) that records what it accepted, with
 * switches for the failures the outbox must survive. STARTTLS uses the package's built-in
 * self-signed certificate.
 */
import { once } from "node:events";
import type { AddressInfo } from "node:net";

import { simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerOptions } from "smtp-server";

export interface Received {
  readonly to: string;
  readonly messageId: string | undefined;
  readonly subject: string | undefined;
  readonly text: string | undefined;
  readonly html: string | false;
  /** The session had been upgraded with STARTTLS (or was TLS from the start). */
  readonly secure: boolean;
  readonly user: string | undefined;
}

export type Behaviour =
  | { readonly kind: "accept" }
  /** Answers DATA with `code` the first `times` times, then accepts. */
  | { readonly kind: "reply"; readonly code: number; readonly times: number }
  /** Reads the whole message, records it, and drops the connection before answering. */
  | { readonly kind: "drop-after-data"; readonly times: number }
  /** Drops the connection while the message is still arriving (before its end), `times` times. */
  | { readonly kind: "drop-mid-data"; readonly times: number };

export interface TestSmtpServer {
  readonly url: string;
  readonly received: Received[];
  readonly dataCommands: () => number;
  close(): Promise<void>;
}

export const SMTP_USER = "mailer";
export const SMTP_PASSWORD = "s3cret-pass";

/** Listens on 127.0.0.1:0 (retrying EADDRINUSE, which a busy shared machine can produce). */
export async function startSmtpServer(behaviour: Behaviour, options: { auth?: boolean; starttls?: boolean } = {}): Promise<TestSmtpServer> {
  const received: Received[] = [];
  let dataCommands = 0;
  const server: SMTPServer = new SMTPServer({
    logger: false,
    disabledCommands: [...(options.auth === false ? ["AUTH"] : []), ...(options.starttls === false ? ["STARTTLS"] : [])],
    authOptional: options.auth === false,
    allowInsecureAuth: false,
    onAuth(auth, _session, callback) {
      if (auth.username === SMTP_USER && auth.password === SMTP_PASSWORD) return callback(null, { user: auth.username });
      return callback(Object.assign(new Error("Invalid credentials"), { responseCode: 535 }));
    },
    onData(stream, session, callback) {
      dataCommands++;
      if (behaviour.kind === "drop-mid-data" && dataCommands <= behaviour.times) {
        stream.once("data", () => {
          for (const connection of server.connections) (connection as unknown as { _socket: { destroy(): void } })._socket.destroy();
        });
        stream.resume();
        return;
      }
      void simpleParser(stream).then((mail) => {
        const n = dataCommands;
        if (behaviour.kind === "reply" && n <= behaviour.times) {
          return callback(Object.assign(new Error(`try later (${behaviour.code})`), { responseCode: behaviour.code }));
        }
        const to = session.envelope.rcptTo.map((r) => r.address).join(",");
        received.push({ to, messageId: mail.messageId, subject: mail.subject, text: mail.text, html: mail.html ?? false, secure: session.secure, user: typeof session.user === "string" ? session.user : undefined });
        if (behaviour.kind === "drop-after-data" && n <= behaviour.times) {
          for (const connection of server.connections) (connection as unknown as { _socket: { destroy(): void } })._socket.destroy();
          return;
        }
        callback(null, "queued");
      });
    },
  } satisfies SMTPServerOptions);
  const port = await listen(server);
  const credentials = options.auth === false ? "" : `${SMTP_USER}:${SMTP_PASSWORD}@`;
  return {
    url: `smtp://${credentials}127.0.0.1:${port}`,
    received,
    dataCommands: () => dataCommands,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function listen(server: SMTPServer): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    try {
      server.listen(0, "127.0.0.1");
      await once(server.server, "listening");
      return (server.server.address() as AddressInfo).port;
    } catch (error) {
      if ((error as { code?: string }).code !== "EADDRINUSE" || attempt >= 20) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
