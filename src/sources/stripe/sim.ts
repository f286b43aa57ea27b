/**
 * A simulated Stripe account: customers, prices, subscriptions and invoices driven through their
 * lifecycles on an injected clock, emitting the events Stripe would (current API shapes, in the
 * order Stripe generates them). In-memory and synchronous; no I/O.
 *
 * Used by `stripe send` (to produce complete, realistic payloads offline) and by the fake Stripe
 * API of the tests (test/fake-stripe/), which serves this state over HTTP.
 *
 * Lifecycle transitions (each emits events):
 *   create ──► trialing (trial) | active (paid) | incomplete (first payment fails)
 *   trialing ──endTrial(paid)──► active        ──endTrial(no payment method)──► paused
 *   active ──failPayment──► past_due ──markUnpaid──► unpaid ──payInvoice──► active
 *   paused ──resume──► active;  incomplete ──expire──► incomplete_expired
 *   any live ──cancelAtPeriodEnd / changeTier / renew──► updated;  cancelNow / renew at end ──► canceled
 */
import type { SubscriptionStatus } from "../../reconciler/types.ts";
import {
  customerObject,
  deletedCustomerObject,
  eventObject,
  invoiceObject,
  type InvoiceStatus,
  type JsonObject,
  PAID_TIERS,
  type PaidTier,
  priceObject,
  subscriptionObject,
  TIER_AMOUNTS,
} from "./objects.ts";

export const PERIOD_SECONDS = 30 * 24 * 3600;

export interface SimSubscription {
  id: string;
  itemId: string;
  customer: string;
  tier: PaidTier;
  status: SubscriptionStatus;
  created: number;
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd: boolean;
  canceledAt: number | null;
  endedAt: number | null;
  trialStart: number | null;
  trialEnd: number | null;
  latestInvoice: string | null;
}

interface SimCustomer {
  id: string;
  email: string | null;
  name: string | null;
  created: number;
  deleted: boolean;
}

export class StripeSim {
  readonly events: JsonObject[] = [];
  readonly customers = new Map<string, SimCustomer>();
  readonly subscriptions = new Map<string, SimSubscription>();
  readonly prices = new Map<string, JsonObject>();
  readonly invoices = new Map<string, JsonObject>();
  private seq = 0;

  /** `clock` returns unix seconds; `prefix` keeps ids unique across sims sharing one database. */
  constructor(private readonly clock: () => number, readonly prefix: string = randomPrefix()) {
    for (const tier of PAID_TIERS) {
      this.prices.set(this.priceId(tier), priceObject({ id: this.priceId(tier), tier, product: `prod_${tier}`, created: clock() }));
    }
  }

  priceId(tier: PaidTier): string {
    return `price_${this.prefix}_${tier}_monthly`;
  }

  private nextId(kind: string): string {
    this.seq += 1;
    return `${kind}_${this.prefix}${String(this.seq).padStart(6, "0")}`;
  }

  private emit(type: string, object: JsonObject, previousAttributes?: JsonObject): void {
    this.events.push(eventObject({ id: this.nextId("evt"), type, created: this.clock(), object: structuredClone(object), previousAttributes: previousAttributes ?? null }));
  }

  customerObject(id: string): JsonObject | undefined {
    const c = this.customers.get(id);
    if (c === undefined) return undefined;
    return c.deleted ? deletedCustomerObject(id) : customerObject(c);
  }

  subscriptionObject(id: string): JsonObject | undefined {
    const s = this.subscriptions.get(id);
    if (s === undefined) return undefined;
    return subscriptionObject({
      id: s.id,
      itemId: s.itemId,
      customer: s.customer,
      price: this.prices.get(this.priceId(s.tier))!,
      status: s.status,
      created: s.created,
      currentPeriodStart: s.periodStart,
      currentPeriodEnd: s.periodEnd,
      cancelAtPeriodEnd: s.cancelAtPeriodEnd,
      cancelAt: s.cancelAtPeriodEnd ? s.periodEnd : null,
      canceledAt: s.canceledAt,
      endedAt: s.endedAt,
      trialStart: s.trialStart,
      trialEnd: s.trialEnd,
      latestInvoice: s.latestInvoice,
    });
  }

  createCustomer(input: { email: string | null; name?: string | null; id?: string }): string {
    const id = input.id ?? this.nextId("cus");
    this.customers.set(id, { id, email: input.email, name: input.name ?? null, created: this.clock(), deleted: false });
    this.emit("customer.created", this.customerObject(id)!);
    return id;
  }

  updateCustomer(id: string, patch: { email?: string | null; name?: string | null }): void {
    const c = this.need(this.customers, id, "customer");
    const previous: JsonObject = {};
    if (patch.email !== undefined) [previous.email, c.email] = [c.email, patch.email];
    if (patch.name !== undefined) [previous.name, c.name] = [c.name, patch.name];
    this.emit("customer.updated", this.customerObject(id)!, previous);
  }

  /** Stripe cancels every live subscription of a deleted customer first. */
  deleteCustomer(id: string): void {
    const c = this.need(this.customers, id, "customer");
    for (const s of this.subscriptions.values()) if (s.customer === id && isLive(s.status)) this.cancelNow(s.id);
    const last = customerObject(c);
    c.deleted = true;
    this.emit("customer.deleted", last);
  }

  createSubscription(input: { customer: string; tier: PaidTier; trialDays?: number; failFirstPayment?: boolean; id?: string }): string {
    this.need(this.customers, input.customer, "customer");
    const now = this.clock();
    const trial = (input.trialDays ?? 0) > 0;
    const end = trial ? now + input.trialDays! * 86400 : now + PERIOD_SECONDS;
    const sub: SimSubscription = {
      id: input.id ?? this.nextId("sub"),
      itemId: this.nextId("si"),
      customer: input.customer,
      tier: input.tier,
      status: trial ? "trialing" : input.failFirstPayment ? "incomplete" : "active",
      created: now,
      periodStart: now,
      periodEnd: end,
      cancelAtPeriodEnd: false,
      canceledAt: null,
      endedAt: null,
      trialStart: trial ? now : null,
      trialEnd: trial ? end : null,
      latestInvoice: null,
    };
    this.subscriptions.set(sub.id, sub);
    const invoice = this.invoice(sub, trial ? 0 : TIER_AMOUNTS[sub.tier], "subscription_create");
    this.emit("customer.subscription.created", this.subscriptionObject(sub.id)!);
    this.invoiceEvents(invoice, input.failFirstPayment === true && !trial);
    return sub.id;
  }

  endTrial(id: string, options: { paid: boolean }): void {
    const s = this.needStatus(id, ["trialing"]);
    const now = this.clock();
    const previous: JsonObject = { status: s.status, trial_end: s.trialEnd };
    s.trialEnd = now;
    if (!options.paid) {
      s.status = "paused";
      this.emit("customer.subscription.paused", this.subscriptionObject(id)!, previous);
      return;
    }
    this.startPeriod(s, now);
    s.status = "active";
    const invoice = this.invoice(s, TIER_AMOUNTS[s.tier], "subscription_cycle");
    this.emit("customer.subscription.updated", this.subscriptionObject(id)!, previous);
    this.invoiceEvents(invoice, false);
  }

  /** A renewal charge fails: `past_due` (Smart Retries go on). */
  failPayment(id: string): void {
    const s = this.needStatus(id, ["active", "past_due"]);
    const invoice = this.invoice(s, TIER_AMOUNTS[s.tier], "subscription_cycle");
    this.invoiceEvents(invoice, true);
    if (s.status !== "past_due") this.setStatus(s, "past_due", "customer.subscription.updated");
  }

  /** Retries exhausted with the "mark unpaid" setting. */
  markUnpaid(id: string): void {
    this.setStatus(this.needStatus(id, ["past_due"]), "unpaid", "customer.subscription.updated");
  }

  /** The open invoice is paid (retry or new card): back to `active`. */
  payInvoice(id: string): void {
    const s = this.needStatus(id, ["past_due", "unpaid", "incomplete"]);
    const invoice = this.invoices.get(s.latestInvoice ?? "");
    if (invoice !== undefined) this.paidInvoiceEvents(invoice);
    this.setStatus(s, "active", "customer.subscription.updated");
  }

  /** The 23 hours of an incomplete first payment ran out. */
  expire(id: string): void {
    const s = this.needStatus(id, ["incomplete"]);
    s.endedAt = this.clock();
    this.setStatus(s, "incomplete_expired", "customer.subscription.updated");
  }

  setCancelAtPeriodEnd(id: string, value: boolean): void {
    const s = this.needStatus(id, ["trialing", "active", "past_due"]);
    if (s.cancelAtPeriodEnd === value) return;
    const previous: JsonObject = { cancel_at_period_end: s.cancelAtPeriodEnd, cancel_at: s.cancelAtPeriodEnd ? s.periodEnd : null };
    s.cancelAtPeriodEnd = value;
    s.canceledAt = value ? this.clock() : null;
    this.emit("customer.subscription.updated", this.subscriptionObject(id)!, previous);
  }

  /** The period ends: cancel when asked to at period end, else renew (invoice paid, new period). */
  renew(id: string): void {
    const s = this.needStatus(id, ["active"]);
    if (s.cancelAtPeriodEnd) return this.cancelNow(id);
    const previous: JsonObject = { items: this.itemPeriods(s) };
    this.startPeriod(s, this.clock());
    const invoice = this.invoice(s, TIER_AMOUNTS[s.tier], "subscription_cycle");
    this.emit("customer.subscription.updated", this.subscriptionObject(id)!, previous);
    this.invoiceEvents(invoice, false);
  }

  cancelNow(id: string): void {
    const s = this.needStatus(id, ["trialing", "active", "past_due", "unpaid", "paused", "incomplete"]);
    const now = this.clock();
    s.canceledAt = s.canceledAt ?? now;
    s.endedAt = now;
    s.status = "canceled";
    this.emit("customer.subscription.deleted", this.subscriptionObject(id)!);
  }

  /** `POST /v1/subscriptions/:id/resume`: a paused subscription starts a new paid period. */
  resume(id: string): void {
    const s = this.needStatus(id, ["paused"]);
    const previous: JsonObject = { status: s.status };
    this.startPeriod(s, this.clock());
    s.status = "active";
    const invoice = this.invoice(s, TIER_AMOUNTS[s.tier], "subscription_cycle");
    this.emit("customer.subscription.resumed", this.subscriptionObject(id)!, previous);
    this.invoiceEvents(invoice, false);
  }

  changeTier(id: string, tier: PaidTier): void {
    const s = this.needStatus(id, ["trialing", "active", "past_due"]);
    if (s.tier === tier) return;
    const previous: JsonObject = { items: { object: "list", data: [{ id: s.itemId, price: this.prices.get(this.priceId(s.tier))! }] } };
    s.tier = tier;
    this.emit("customer.subscription.updated", this.subscriptionObject(id)!, previous);
  }

  private setStatus(s: SimSubscription, status: SubscriptionStatus, type: string): void {
    const previous: JsonObject = { status: s.status };
    s.status = status;
    this.emit(type, this.subscriptionObject(s.id)!, previous);
  }

  private startPeriod(s: SimSubscription, now: number): void {
    s.periodStart = now;
    s.periodEnd = now + PERIOD_SECONDS;
  }

  private itemPeriods(s: SimSubscription): JsonObject {
    return { object: "list", data: [{ id: s.itemId, current_period_start: s.periodStart, current_period_end: s.periodEnd }] };
  }

  private invoice(s: SimSubscription, amount: number, billingReason: "subscription_create" | "subscription_cycle"): JsonObject {
    const id = this.nextId("in");
    const invoice = invoiceObject({
      id,
      customer: s.customer,
      subscription: s.id,
      status: "draft",
      amount,
      created: this.clock(),
      periodStart: s.periodStart,
      periodEnd: s.periodEnd,
      attemptCount: 0,
      billingReason,
    });
    s.latestInvoice = id;
    this.invoices.set(id, invoice);
    return invoice;
  }

  /** created → finalized → paid/payment_succeeded, or → payment_failed. */
  private invoiceEvents(invoice: JsonObject, fail: boolean): void {
    this.emit("invoice.created", invoice);
    this.setInvoice(invoice, "open", 1);
    this.emit("invoice.finalized", invoice);
    if (fail) this.emit("invoice.payment_failed", invoice);
    else this.paidInvoiceEvents(invoice);
  }

  private paidInvoiceEvents(invoice: JsonObject): void {
    this.setInvoice(invoice, "paid", Number(invoice.attempt_count ?? 0) + 1);
    this.emit("invoice.paid", invoice);
    this.emit("invoice.payment_succeeded", invoice);
  }

  private setInvoice(invoice: JsonObject, status: InvoiceStatus, attempts: number): void {
    invoice.status = status;
    invoice.attempt_count = attempts;
    invoice.attempted = attempts > 0;
    if (status === "paid") {
      invoice.amount_paid = invoice.amount_due ?? 0;
      invoice.amount_remaining = 0;
    }
  }

  private needStatus(id: string, allowed: readonly SubscriptionStatus[]): SimSubscription {
    const s = this.need(this.subscriptions, id, "subscription");
    if (!allowed.includes(s.status)) throw new SimStateError(`subscription ${id} is ${s.status}; expected ${allowed.join(" or ")}`);
    return s;
  }

  private need<T>(map: Map<string, T>, id: string, kind: string): T {
    const found = map.get(id);
    if (found === undefined) throw new SimMissingError(kind, id);
    return found;
  }
}

/** The object does not exist (the fake API answers 404 `resource_missing`). */
export class SimMissingError extends Error {
  constructor(readonly kind: string, readonly id: string) {
    super(`No such ${kind}: '${id}'`);
  }
}

/** The transition is not possible from the current state (the fake API answers 400). */
export class SimStateError extends Error {}

const isLive = (status: SubscriptionStatus): boolean => status !== "canceled" && status !== "incomplete_expired";

function randomPrefix(): string {
  return Math.random().toString(36).slice(2, 8).padEnd(6, "0");
}
