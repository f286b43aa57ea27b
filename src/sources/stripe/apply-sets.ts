/**
 * Payload mode, a batch's first attempt: the events of many customers applied round by round.
 * Round k holds the k-th due event of each customer, so each customer's events keep their order,
 * and one step of many customers shares one statement. The events that make something new are
 * applied set-wise (src/state/billing-sets.ts): a customer event for a customer without an account
 * whose email no account has (a sign-up), and a subscription event for a subscription not stored
 * yet whose customer has an account. A round of sign-ups then costs about ten statements whatever
 * its size, instead of about five per event. Every other event (an update, a link by email, a
 * deletion, a subscription whose customer is not known yet, a kind without state) goes to
 * `applyAlone`, the one-at-a-time path, side by side on the connection after the round's set-wise
 * statements.
 *
 * Set-wise application decides nothing differently from the one-at-a-time path: it takes only the
 * cases where that path would create, and writes the same rows and audit entries. A statement that
 * fails (another writer created the row first: a unique violation) throws, and the worker retries
 * the batch one customer at a time (inbox.ts).
 */
import { accountCreatedAudit, placeholderEmail, provisionRequestedAudit, type SubscriptionSnapshot, wantsInstance } from "../../state/billing.ts";
import {
  accountEmailsTaken,
  accountIdsOfCustomers,
  auditBillingRows,
  insertAccounts,
  insertSubscriptions,
  lockAccountEmails,
  provisionInstances,
  storedSubscriptionIds,
} from "../../state/billing-sets.ts";
import type { Db } from "../../state/sql.ts";
import { type PendingEvent, wakeCustomers } from "../../state/stripe-events.ts";
import { customerOfEvent, payloadSource, subscriptionOfEvent } from "./apply.ts";
import { billingChanges, classifyEventType, type PriceTierMap } from "./map.ts";
import { subscriptionWrittenAudit } from "./subscriptions.ts";

export interface RoundsOptions {
  readonly priceTiers: PriceTierMap;
  /** An event applied set-wise, with what it did ("account created"). */
  readonly applied: (event: PendingEvent, detail: string) => void;
  /** Applies one event the one-at-a-time way; rejects to fail the batch. */
  readonly applyAlone: (event: PendingEvent) => Promise<void>;
}

/** Applies each customer's events (`queues`, one per customer, in order) round by round. */
export async function applyInRounds(sql: Db, queues: ReadonlyArray<readonly PendingEvent[]>, options: RoundsOptions): Promise<void> {
  const rounds = Math.max(0, ...queues.map((queue) => queue.length));
  for (let k = 0; k < rounds; k++) {
    const round = queues.flatMap((queue) => (k < queue.length ? [queue[k]!] : []));
    const customers = await applyNewCustomers(sql, round.filter((event) => classifyEventType(event.type) === "customer"));
    const subscriptions = await applyNewSubscriptions(sql, round.filter((event) => classifyEventType(event.type) === "subscription"), options.priceTiers);
    for (const { event, detail } of [...customers, ...subscriptions]) options.applied(event, detail);
    const done = new Set([...customers, ...subscriptions].map(({ event }) => event));
    await allOrFirstFailure(round.filter((event) => !done.has(event)).map(options.applyAlone));
  }
}

interface Applied {
  readonly event: PendingEvent;
  readonly detail: string;
}

/** Creates the account of each new customer whose email is free, as `upsertAccountFromCustomer` would. */
async function applyNewCustomers(sql: Db, events: readonly PendingEvent[]): Promise<Applied[]> {
  if (events.length === 0) return [];
  const candidates = events.map((event) => {
    const customer = customerOfEvent(event);
    return { event, customer, email: customer.email ?? placeholderEmail(customer.customerId) };
  });
  const known = await accountIdsOfCustomers(sql, candidates.map((c) => c.customer.customerId));
  // One per email: a second new customer of an email links to the first's account, alone.
  const fresh = firstOfEach(
    candidates.filter((c) => !c.customer.deleted && !known.has(c.customer.customerId)),
    (c) => c.email,
  );
  if (fresh.length === 0) return [];
  await lockAccountEmails(sql, fresh.map((c) => c.email));
  const taken = await accountEmailsTaken(sql, fresh.map((c) => c.email));
  const created = fresh.filter((c) => !taken.has(c.email));
  const ids = await insertAccounts(sql, created.map(({ customer, email }) => ({ customerId: customer.customerId, email, fullName: customer.fullName, companyName: customer.companyName })));
  await auditBillingRows(sql, created.map(({ event, customer, email }) => accountCreatedAudit(ids.get(customer.customerId)!, customer.customerId, email, payloadSource(event))));
  await wakeCustomers(sql, created.map((c) => c.customer.customerId));
  return created.map(({ event }) => ({ event, detail: "account created" }));
}

/** Inserts each new subscription of a known customer, with its instance when it is trialing or active, as `applySubscription` would. */
async function applyNewSubscriptions(sql: Db, events: readonly PendingEvent[], priceTiers: PriceTierMap): Promise<Applied[]> {
  if (events.length === 0) return [];
  const candidates = events.map((event) => ({ event, snap: subscriptionOfEvent(event, priceTiers) }));
  const accounts = await accountIdsOfCustomers(sql, candidates.map((c) => c.snap.customerId));
  const known = candidates.filter((c) => accounts.has(c.snap.customerId));
  const stored = await storedSubscriptionIds(sql, known.map((c) => c.snap.stripeSubscriptionId));
  const fresh = firstOfEach(known.filter((c) => !stored.has(c.snap.stripeSubscriptionId)), (c) => c.snap.stripeSubscriptionId);
  if (fresh.length === 0) return [];
  const written = fresh.map(({ event, snap }) => ({ event, snap, accountId: accounts.get(snap.customerId)!, source: payloadSource(event) }));
  const ids = await insertSubscriptions(sql, written.map(({ event, snap, accountId }) => ({ snap, accountId, stateAt: event.created })));
  const created = written.map((w) => ({ ...w, id: ids.get(w.snap.stripeSubscriptionId)! }));
  await auditBillingRows(sql, created.map((c) => subscriptionWrittenAudit("created", c.id, null, c.snap, billingChanges(null, c.snap), c)));
  await requestInstances(sql, created.filter((c) => wantsInstance(c.snap.status)));
  return created.map(({ event }) => ({ event, detail: "subscription created" }));
}

type CreatedSubscription = { readonly id: string; readonly snap: SubscriptionSnapshot; readonly accountId: string; readonly source: ReturnType<typeof payloadSource> };

/** `ensureInstance` for subscriptions created in this transaction (none has an instance yet). */
async function requestInstances(sql: Db, subscriptions: readonly CreatedSubscription[]): Promise<void> {
  const instances = await provisionInstances(sql, subscriptions.map((s) => s.id));
  await auditBillingRows(sql, subscriptions.map((s) => provisionRequestedAudit(s.id, s.snap.status, instances.get(s.id) ?? null, s)));
}

/** The first item of each key, in order; the rest are left to the one-at-a-time path. */
function firstOfEach<T>(items: readonly T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const k = key(item);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Waits for every promise (none is left running), then rethrows the first rejection. */
async function allOrFirstFailure(promises: ReadonlyArray<Promise<void>>): Promise<void> {
  const settled = await Promise.allSettled(promises);
  const failed = settled.find((result): result is PromiseRejectedResult => result.status === "rejected");
  if (failed) throw failed.reason;
}
