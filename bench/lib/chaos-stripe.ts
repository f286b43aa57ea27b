/**
 * The Stripe churn of the chaos soak: subscription lifecycles on a StripeSim (creates, upgrades and
 * downgrades, past_due and payment, cancellations now and at period end), whose events go to the
 * daemon's webhook signed with its secret, in small shuffled batches with duplicates, each retried
 * until it is answered 200 (as Stripe retries a 503, a refused connection or a daemon that is down).
 *
 * Payload mode's guarantee (map.ts): every event delivered at least once, in any order, and the
 * steps of one subscription on distinct seconds. The sim's clock is the wall clock, moved one
 * second past the last step when two steps would share a second.
 */
import Stripe from "stripe";

import type { PaidTier } from "../../src/sources/stripe/objects.ts";
import { SimStateError, StripeSim } from "../../src/sources/stripe/sim.ts";

const TIERS: readonly PaidTier[] = ["starter", "professional", "enterprise"];
const POST_TIMEOUT_MS = 10_000;

export interface ChurnStats {
  lifecycles: number;
  steps: Record<string, number>;
  eventsGenerated: number;
  deliveries: number;
  duplicates: number;
  retries: number;
}

export class StripeChurn {
  readonly sim: StripeSim;
  /** Every event id the daemon answered 200 for. */
  readonly accepted = new Set<string>();
  readonly stats: ChurnStats = { lifecycles: 0, steps: {}, eventsGenerated: 0, deliveries: 0, duplicates: 0, retries: 0 };
  private lastSecond = 0;
  private sent = 0;

  constructor(
    private readonly random: () => number,
    private readonly secret: string,
  ) {
    this.sim = new StripeSim(() => this.lastSecond, "chaos");
  }

  /** One churn step: a new lifecycle while fewer than `maxLive` are live, otherwise a step of one. */
  step(maxLive: number): void {
    this.tick();
    const live = [...this.sim.subscriptions.values()].filter((s) => !["canceled", "incomplete_expired"].includes(s.status));
    if (live.length < maxLive && (live.length === 0 || this.random() < 0.4)) return this.create();
    const sub = live[Math.floor(this.random() * live.length)]!;
    const kinds = ["upgrade", "past_due", "pay", "cancel_at_period_end", "cancel_now"] as const;
    const kind = kinds[Math.floor(this.random() * kinds.length)]!;
    try {
      if (kind === "upgrade") this.sim.changeTier(sub.id, TIERS.filter((t) => t !== sub.tier)[Math.floor(this.random() * 2)]!);
      if (kind === "past_due") this.sim.failPayment(sub.id);
      if (kind === "pay") this.sim.payInvoice(sub.id);
      if (kind === "cancel_at_period_end") this.sim.setCancelAtPeriodEnd(sub.id, !sub.cancelAtPeriodEnd);
      if (kind === "cancel_now") this.sim.cancelNow(sub.id);
      this.stats.steps[kind] = (this.stats.steps[kind] ?? 0) + 1;
    } catch (error) {
      if (!(error instanceof SimStateError)) throw error;
    }
  }

  /** Sends every event generated since the last call: shuffled, some twice, each until 200. */
  async deliver(port: () => Promise<number>, deadline: number): Promise<void> {
    const batch = this.sim.events.slice(this.sent);
    this.sent = this.sim.events.length;
    this.stats.eventsGenerated += batch.length;
    const deliveries = batch.flatMap((event) => (this.random() < 0.25 ? [event, event] : [event]));
    this.stats.duplicates += deliveries.length - batch.length;
    for (let i = deliveries.length - 1; i > 0; i--) {
      const j = Math.floor(this.random() * (i + 1));
      [deliveries[i], deliveries[j]] = [deliveries[j]!, deliveries[i]!];
    }
    for (const event of deliveries) await this.post(event, port, deadline);
  }

  private create(): void {
    const customer = this.sim.createCustomer({ email: `chaos-${this.stats.lifecycles}@example.com`, name: `chaos ${this.stats.lifecycles}` });
    const tier = TIERS[Math.floor(this.random() * TIERS.length)]!;
    this.sim.createSubscription({ customer, tier, ...(this.random() < 0.3 ? { trialDays: 14 } : {}) });
    this.stats.lifecycles += 1;
    this.stats.steps.create = (this.stats.steps.create ?? 0) + 1;
  }

  private tick(): void {
    this.lastSecond = Math.max(this.lastSecond + 1, Math.floor(Date.now() / 1000));
  }

  private async post(event: Record<string, unknown>, port: () => Promise<number>, deadline: number): Promise<void> {
    const body = JSON.stringify(event);
    for (let attempt = 0; Date.now() < deadline; attempt++) {
      if (attempt > 0) {
        this.stats.retries += 1;
        await new Promise((resolve) => setTimeout(resolve, Math.min(5_000, 250 * 2 ** attempt)));
      }
      try {
        const response = await fetch(`http://127.0.0.1:${await port()}/webhooks/stripe`, {
          method: "POST",
          headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload: body, secret: this.secret }) },
          body,
          signal: AbortSignal.timeout(POST_TIMEOUT_MS),
        });
        await response.text();
        this.stats.deliveries += 1;
        if (response.status === 200) {
          this.accepted.add(String(event.id));
          return;
        }
      } catch {
        // Refused or timed out: the daemon is down or restarting; retry like Stripe.
      }
    }
    throw new Error(`event ${String(event.id)} not accepted before the deadline`);
  }
}
