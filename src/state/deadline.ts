/**
 * Client-side deadlines for database calls.
 *
 * A database that hangs (a frozen server, a network partition that drops packets silently) never
 * closes the connection: the kernel keeps acknowledging, so neither TCP nor postgres.js ever gives
 * up on a query already sent, and a query waiting for a pool connection waits as long as that one
 * does. The server-side `statement_timeout` (see db.ts) only helps a server that still runs.
 * `withDeadline` bounds the caller's wait: after `ms` it rejects with DatabaseTimeoutError and the
 * caller answers or backs off. A postgres.js query still pending is then cancelled (a
 * CancelRequest on its own short-lived connection, itself bounded by connect_timeout), so its pool
 * slot frees as soon as the server can act on it.
 *
 * The deadline covers everything the call waits for: pool acquisition, connecting, the statement.
 */

export class DatabaseTimeoutError extends Error {
  override readonly name = "DatabaseTimeoutError";
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
  ) {
    super(`database did not answer within ${timeoutMs} ms (${what})`);
  }
}

/** Something `withDeadline` can cancel: a postgres.js PendingQuery has `cancel()`. */
interface Cancellable {
  cancel(): unknown;
}

function isCancellable(value: unknown): value is Cancellable {
  return typeof value === "object" && value !== null && typeof (value as { cancel?: unknown }).cancel === "function";
}

/**
 * Runs `call` and resolves with its result, or rejects with DatabaseTimeoutError after `ms`.
 * A late result or error of the abandoned call is swallowed (never an unhandled rejection).
 */
export async function withDeadline<T>(ms: number, what: string, call: () => PromiseLike<T>): Promise<T> {
  const pending = call();
  const settled = Promise.resolve(pending);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      settled.catch(() => {});
      if (isCancellable(pending)) {
        try {
          void Promise.resolve(pending.cancel()).catch(() => {});
        } catch {
          // Cancelling is best effort: the server-side statement_timeout ends it later anyway.
        }
      }
      reject(new DatabaseTimeoutError(what, ms));
    }, ms);
  });
  try {
    return await Promise.race([settled, expired]);
  } finally {
    clearTimeout(timer);
  }
}

export function isDatabaseTimeout(thrown: unknown): thrown is DatabaseTimeoutError {
  return thrown instanceof DatabaseTimeoutError;
}
