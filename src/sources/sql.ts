/**
 * `LISTEN mindroom_reconcile`: every notification's payload (a subscription id, or an operator's
 * request for one: see state/reconcile-requests.ts) becomes a high-priority key. Notifications
 * sent while the connection was down are lost, so every (re)connect triggers a full resync.
 * Starts without blocking; only enqueues (STYLE rule 8).
 */
import type { Sql } from "postgres";

import { parseReconcilePayload, RECONCILE_CHANNEL } from "../state/reconcile-requests.ts";

export { RECONCILE_CHANNEL };

export interface SqlSourceOptions {
  readonly sql: Sql;
  readonly enqueue: (key: string) => void;
  /** An operator asked for a deep pass of `key` (answered by request id); called before enqueue. */
  readonly onRequest?: (key: string, request: string) => void;
  /** Called after every (re)connect of the listening connection. */
  readonly resyncAll: () => void;
  readonly logger: { info(obj: object, msg?: string): void; warn(obj: object, msg?: string): void };
}

/** Resolves when `signal` aborts and the listener is closed. */
export async function startSqlSource(options: SqlSourceOptions, signal: AbortSignal): Promise<void> {
  let connects = 0;
  const listener = await options.sql.listen(
    RECONCILE_CHANNEL,
    (payload) => {
      const parsed = parseReconcilePayload(payload);
      if (!parsed) return;
      if (parsed.request !== undefined) options.onRequest?.(parsed.key, parsed.request);
      options.enqueue(parsed.key);
    },
    () => {
      connects += 1;
      options.logger.info({ channel: RECONCILE_CHANNEL, reconnect: connects > 1 }, "listening for desired-state changes");
      options.resyncAll();
    },
  );
  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener("abort", () => resolve(), { once: true });
  });
  await listener.unlisten().catch((error: unknown) => options.logger.warn({ err: error }, "unlisten failed"));
}
