/**
 * Two error classes drive control flow (STYLE rule 5). Anything else thrown means "retry with
 * backoff". Structured context (argv, exit code, stderr) is attached as non-enumerable properties
 * so that a logger serialising the error never prints values that may hold secrets.
 */

/** Do not retry: the input or the world is wrong in a way time will not fix. Surfaced in status. */
export class TerminalError extends Error {
  override readonly name = "TerminalError";
  /** Short machine-readable reason, used as a condition reason and a metric label. */
  readonly reason: string;
  constructor(reason: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

/**
 * A command was sent but no exit status came back (the connection dropped). Whether it took
 * effect is unknown: the caller observes again before acting, and never repeats it blindly.
 */
export class OutcomeUnknownError extends Error {
  override readonly name = "OutcomeUnknownError";
}

/**
 * Something this command needs is not there (no database to connect to): an expected condition
 * the operator fixes, reported in one line with exit 1, no stack.
 */
export class UnavailableError extends Error {
  override readonly name = "UnavailableError";
}

/** Normalises anything thrown into an Error (graphile-worker's coerceError). */
export function coerceError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === "string" ? thrown : `non-error thrown: ${String(thrown)}`);
}

/** Attaches context that must not be serialised by loggers (it may contain secrets). */
export function attachHidden<E extends Error>(error: E, fields: Record<string, unknown>): E {
  for (const [key, value] of Object.entries(fields)) {
    Object.defineProperty(error, key, { value, enumerable: false, configurable: true, writable: false });
  }
  return error;
}

/** The SQLSTATE of a Postgres error (postgres.js `PostgresError.code`), or undefined. */
export function sqlState(thrown: unknown): string | undefined {
  if (!(thrown instanceof Error) || thrown.name !== "PostgresError") return undefined;
  const code: unknown = (thrown as Error & { code?: unknown }).code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * What of an error may be logged or stored as `last_error`. A Postgres error's message, detail
 * and context can quote the data it refused (a customer's email in a unique violation, a JSON
 * token), so only its SQLSTATE and the names of the table and constraint are kept.
 */
export function loggableError(thrown: unknown): Error {
  const code = sqlState(thrown);
  if (code === undefined) return coerceError(thrown);
  const { table_name: table, constraint_name: constraint } = thrown as { table_name?: unknown; constraint_name?: unknown };
  const where = [typeof table === "string" ? ` on ${table}` : "", typeof constraint === "string" ? ` (${constraint})` : ""].join("");
  const safe = new Error(`postgres error ${code}${where}`);
  safe.name = "PostgresError";
  return Object.assign(safe, { code });
}
