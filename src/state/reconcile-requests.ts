/**
 * Operator requests to the leading controller, over Postgres NOTIFY (every replica and every
 * one-shot command already has the database; no port to find).
 *
 * Protocol: a command LISTENs on RECONCILED_CHANNEL, then sends `{ key, request, deep: true }` on
 * the reconcile channel, the one the database triggers use with a bare subscription id. The leader
 * runs a deep pass for the key that starts after the request arrived and answers on
 * RECONCILED_CHANNEL with the same `request` id. Notifications are lost when nobody listens, so
 * the command bounds its wait and says so when no answer comes.
 */
import type { Sql } from "postgres";

export const RECONCILE_CHANNEL = "mindroom_reconcile";
export const RECONCILED_CHANNEL = "mindroom_reconciled";

/** NOTIFY payloads must stay under 8000 bytes. */
const MAX_PAYLOAD = 7_000;

export interface ReconcileRequest {
  readonly key: string;
  readonly request: string;
  readonly deep: true;
}

export interface ReconcileAnswer {
  readonly request: string;
  readonly ok: boolean;
  /** The instance's status after the pass, when it has one. */
  readonly status?: string;
  /** What the pass did, one line per action (no config values), or why it failed. */
  readonly lines: readonly string[];
}

export async function sendReconcileRequest(sql: Sql, request: ReconcileRequest): Promise<void> {
  await sql`select pg_notify(${RECONCILE_CHANNEL}, ${JSON.stringify(request)})`;
}

export async function sendReconcileAnswer(sql: Sql, answer: ReconcileAnswer): Promise<void> {
  let payload = JSON.stringify(answer);
  if (payload.length > MAX_PAYLOAD) payload = JSON.stringify({ ...answer, lines: [...answer.lines.slice(0, 20), `(${answer.lines.length - 20} more)`] });
  await sql`select pg_notify(${RECONCILED_CHANNEL}, ${payload})`;
}

/** A reconcile-channel payload: a bare key (the triggers) or an operator's request. Pure. */
export function parseReconcilePayload(payload: string): { key: string; request?: string } | undefined {
  if (!payload.startsWith("{")) return payload === "" ? undefined : { key: payload };
  try {
    const parsed = JSON.parse(payload) as { key?: unknown; request?: unknown };
    if (typeof parsed.key !== "string" || typeof parsed.request !== "string") return undefined;
    return { key: parsed.key, request: parsed.request };
  } catch {
    return undefined;
  }
}

/** Parses an answer; undefined when the payload is not one. Pure. */
export function parseReconcileAnswer(payload: string): ReconcileAnswer | undefined {
  try {
    const parsed = JSON.parse(payload) as Partial<ReconcileAnswer>;
    if (typeof parsed.request !== "string" || typeof parsed.ok !== "boolean" || !Array.isArray(parsed.lines)) return undefined;
    return parsed as ReconcileAnswer;
  } catch {
    return undefined;
  }
}
