/**
 * pino JSON logs, one line per event. Secrets are redacted by key wherever they appear, so a
 * careless `logger.info({ env })` cannot print an instance's config values.
 */
import { type Logger,pino } from "pino";

export type { Logger };

const REDACTED_KEYS = [
  "password",
  "secret",
  "secrets",
  "token",
  "apiKey",
  "privateKey",
  "masterKey",
  "env",
  "config",
  "authorization",
  "signature",
  "databaseUrl",
  "url",
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const paths = REDACTED_KEYS.flatMap((key) => [key, `*.${key}`]);
  return pino(
    { level, base: { service: "mindroom-reconciler" }, redact: { paths, censor: "[redacted]" }, timestamp: pino.stdTimeFunctions.isoTime },
    destination ?? process.stdout,
  );
}
