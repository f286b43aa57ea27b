/**
 * The notifications outbox (welcome, cancellation notice, health alert), delivered by the leader.
 * SMTP delivery is not implemented yet, so a notification is "delivered" by logging it (kind,
 * subject, ids; never the recipient or the body) and marking it sent: each one exactly once.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";

import type { Logger } from "../logger.ts";

const BATCH = 50;
const EVERY_MS = 10_000;

/** Delivers one batch; returns how many were sent. */
export async function deliverPending(sql: Sql, logger: Pick<Logger, "info">): Promise<number> {
  return sql.begin(async (tx) => {
    const rows = await tx<{ id: string; kind: string; subject: string; account_id: string | null; instance_id: string | null }[]>`
      update public.notifications set sent_at = now(), attempts = attempts + 1
      where id in (select id from public.notifications where sent_at is null order by id limit ${BATCH} for update skip locked)
      returning id, kind, subject, account_id, instance_id`;
    for (const row of rows) {
      logger.info({ notification: row.id, kind: row.kind, account: row.account_id, instance: row.instance_id, subject: row.subject }, "notification delivered to the log (SMTP delivery is not implemented)");
    }
    return rows.length;
  });
}

/** Resolves when `signal` aborts. */
export async function runOutbox(sql: Sql, logger: Pick<Logger, "info" | "warn">, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      while ((await deliverPending(sql, logger)) === BATCH && !signal.aborted);
    } catch (error) {
      logger.warn({ err: error }, "notification outbox failed; retrying");
    }
    await sleep(EVERY_MS, undefined, { signal }).catch(() => {});
  }
}
