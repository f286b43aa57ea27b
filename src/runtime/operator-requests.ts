/**
 * Operator requests (`mindroom-reconciler reconcile ID` while a daemon leads): which keys owe a
 * deep pass and to whom the answer goes. A request that arrives while its key is being reconciled
 * waits for the next pass (the queue re-runs a key dirtied mid-flight), so the answer always
 * describes a pass that started after the request.
 */
import type { Sql } from "postgres";

import { coerceError } from "../errors.ts";
import type { ReconcileContext, ReconcileResult } from "../reconciler/controller.ts";
import { describePlan, type PassOutcome } from "../reconciler/reconcile.ts";
import { sendReconcileAnswer } from "../state/reconcile-requests.ts";

type Reconcile = (key: string, signal: AbortSignal, options: { deep?: boolean }) => Promise<{ requeueAfterMs?: number; outcome: PassOutcome }>;

export class OperatorRequests {
  private readonly waiting = new Map<string, string[]>();

  constructor(private readonly sql: Sql) {}

  /** Records a request; the caller enqueues the key. */
  add(key: string, request: string): void {
    this.waiting.set(key, [...(this.waiting.get(key) ?? []), request]);
  }

  /** A ReconcileFn: deep when someone waits for this key, answering them when the pass ends. */
  wrap(reconcile: Reconcile): (key: string, ctx: ReconcileContext) => Promise<ReconcileResult> {
    return async (key, ctx) => {
      const requests = this.waiting.get(key) ?? [];
      this.waiting.delete(key);
      try {
        const { outcome, ...result } = await reconcile(key, ctx.signal, { deep: requests.length > 0 });
        await this.answer(requests, ctx, { ok: true, ...describeOutcome(outcome) });
        return result;
      } catch (error) {
        await this.answer(requests, ctx, { ok: false, lines: [coerceError(error).message] });
        throw error;
      }
    };
  }

  private async answer(requests: readonly string[], ctx: ReconcileContext, answer: { ok: boolean; status?: string; lines: readonly string[] }): Promise<void> {
    for (const request of requests) {
      await sendReconcileAnswer(this.sql, { request, ...answer }).catch((error: unknown) => ctx.logger.warn({ err: error, request }, "could not answer a reconcile request"));
    }
  }
}

function describeOutcome(outcome: PassOutcome): { status?: string; lines: readonly string[] } {
  switch (outcome.kind) {
    case "gone":
      return { lines: ["subscription not found"] };
    case "no-instance":
      return { lines: [`no instance: ${outcome.reason}`] };
    case "waiting":
      return { lines: [`waiting: ${outcome.reason}`] };
    case "planned":
      return { status: outcome.status, lines: describePlan(outcome.actions) };
  }
}
