/**
 * Applying one subscription snapshot: whether to write it (the payload-mode ordering guard of
 * map.ts), what changed (for the audit row), then the write, the audit and, for a trialing or
 * active subscription without a live instance, the instance request. The SQL is in
 * src/state/billing.ts; the decisions are here, in the source that owns them.
 */
import {
  auditBilling,
  type BillingAudit,
  type BillingSource,
  ensureInstance,
  insertSubscription,
  type LockedSubscription,
  lockSubscription,
  sourceDetails,
  type StoredBilling,
  type SubscriptionSnapshot,
  updateSubscription,
} from "../../state/billing.ts";
import type { Db } from "../../state/sql.ts";
import { sameSecondSubscriptionEvents } from "../../state/stripe-events.ts";
import { billingChanges, type Change, type OrderingDecision, orderingDecision, storedRank } from "./map.ts";

export type SubscriptionApplyResult =
  | { readonly result: "created" | "updated" | "unchanged"; readonly subscriptionId: string; readonly instanceRequested: string | null }
  | { readonly result: Exclude<OrderingDecision, "apply">; readonly subscriptionId: string };

export interface ApplySubscriptionOptions {
  readonly accountId: string;
  /** Payloads: the event's `created`; API snapshots: the time of the fetch. */
  readonly stateAt: Date;
  /** True for payloads (no API key): the ordering guard of map.ts decides. */
  readonly guard: boolean;
  /** Payloads: the event's type, which can say where it stands within its second (map.ts). */
  readonly eventType?: string;
  readonly source: BillingSource;
}

/** Writes one subscription snapshot; then requests an instance when it is trialing/active and has none. */
export async function applySubscription(sql: Db, snap: SubscriptionSnapshot, options: ApplySubscriptionOptions): Promise<SubscriptionApplyResult> {
  const stored = await lockSubscription(sql, snap.stripeSubscriptionId);
  if (stored !== undefined && options.guard) {
    const decision = await guardDecision(sql, stored, snap, options);
    if (decision !== "apply") return { result: decision, subscriptionId: stored.id };
  }
  const changes = billingChanges(stored?.billing ?? null, snap);
  let subscriptionId: string;
  let result: "created" | "updated" | "unchanged";
  if (stored === undefined) {
    subscriptionId = await insertSubscription(sql, snap, options);
    result = "created";
  } else {
    subscriptionId = stored.id;
    result = Object.keys(changes).length === 0 ? "unchanged" : "updated";
    await updateSubscription(sql, stored.id, snap, options, result === "updated");
  }
  if (result !== "unchanged") await auditBilling(sql, subscriptionWrittenAudit(result, subscriptionId, stored?.billing ?? null, snap, changes, options));
  const instanceRequested = await ensureInstance(sql, subscriptionId, snap.status, options);
  return { result, subscriptionId, instanceRequested };
}

/** The audit row of a subscription created or updated from `stored` (null: none) to `snap`. */
export function subscriptionWrittenAudit(
  result: "created" | "updated",
  subscriptionId: string,
  stored: StoredBilling | null,
  snap: SubscriptionSnapshot,
  changes: Readonly<Record<string, Change>>,
  options: { readonly accountId: string; readonly source: BillingSource },
): BillingAudit {
  return {
    accountId: options.accountId,
    action: `subscription.${result}`,
    details: {
      subscription_id: subscriptionId,
      stripe_subscription_id: snap.stripeSubscriptionId,
      status: { old: stored?.status ?? null, new: snap.status },
      tier: { old: stored?.tier ?? null, new: snap.tier },
      changes,
      ...sourceDetails(options.source),
    },
  };
}

async function guardDecision(sql: Db, stored: LockedSubscription, snap: SubscriptionSnapshot, options: ApplySubscriptionOptions): Promise<OrderingDecision> {
  const rank = await sameSecondRank(sql, stored, snap, options.stateAt);
  return orderingDecision(
    { status: stored.billing.status, stateAt: stored.stateAt, ...(rank === undefined ? {} : { rank }) },
    { status: snap.status, stateAt: options.stateAt, ...(options.eventType ? { eventType: options.eventType } : {}) },
  );
}

/** The stored state's same-second rank (issue 13: a `resumed` must beat its `paused` in either order). */
async function sameSecondRank(sql: Db, stored: LockedSubscription, snap: SubscriptionSnapshot, stateAt: Date): Promise<number | undefined> {
  if (stored.stateAt?.getTime() !== stateAt.getTime()) return undefined;
  const events = await sameSecondSubscriptionEvents(sql, { customerId: snap.customerId, subscriptionId: snap.stripeSubscriptionId, created: stateAt });
  return storedRank(stored.billing.status, events);
}
