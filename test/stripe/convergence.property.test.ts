/**
 * Convergence properties: a random subscription lifecycle on the fake Stripe, delivered to the real
 * webhook with duplicates, reordering, same-second pairs, late (stale-signature) deliveries and
 * drops, ends with `subscriptions` equal to the fake's state.
 *
 * - API mode (with catch-up): guaranteed for ANY delivery, drops included.
 * - Payload mode: guaranteed when every event is delivered at least once (duplicates and any
 *   reordering allowed) and the subscription's events have distinct `created` seconds, or share a
 *   second only where their event types say the order (a pause resumed in the same second, a
 *   cancellation in the same second as the step before it). Other same-second payloads and drops
 *   are outside the guarantee there (documented in map.ts and describeMode).
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { catchUpEvents } from "../../src/sources/stripe/catchup.ts";
import { StripeInbox } from "../../src/sources/stripe/inbox.ts";
import type { JsonObject, PaidTier } from "../../src/sources/stripe/objects.ts";
import { SimStateError,type StripeSim } from "../../src/sources/stripe/sim.ts";
import { deliver, FakeClock, planDeliveries, startFakeStripe } from "../fake-stripe/index.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { newMetrics, SECRET, silentLogger, startWebhookServer, subscriptionRow, type WebhookServer } from "./helpers.ts";

let db: TestDatabase;
let webhook: WebhookServer;

beforeAll(async () => {
  db = await createTestDatabase();
  webhook = await startWebhookServer(db.sql);
});
afterAll(async () => {
  await webhook?.close();
  await db?.drop();
});

type Step =
  | { kind: "changeTier"; tier: PaidTier }
  | { kind: "failPayment" | "markUnpaid" | "payInvoice" | "renew" | "cancelNow" | "resume" | "expire" }
  | { kind: "cancelAtPeriodEnd"; value: boolean }
  | { kind: "endTrial"; paid: boolean };

const tierArb = fc.constantFrom<PaidTier>("starter", "professional", "enterprise");
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  tierArb.map((tier) => ({ kind: "changeTier" as const, tier })),
  fc.constantFrom("failPayment", "markUnpaid", "payInvoice", "renew", "cancelNow", "resume", "expire").map((kind) => ({ kind }) as Step),
  fc.boolean().map((value) => ({ kind: "cancelAtPeriodEnd" as const, value })),
  fc.boolean().map((paid) => ({ kind: "endTrial" as const, paid })),
);

const lifecycleArb = fc.record({
  tier: tierArb,
  start: fc.constantFrom("trial", "paid", "incomplete"),
  // Seconds before each step: 0 makes a same-second pair with the previous step.
  steps: fc.array(fc.tuple(stepArb, fc.constantFrom(0, 0, 1, 60, 86_400)), { maxLength: 6 }),
});

function runStep(sim: StripeSim, sub: string, step: Step): void {
  try {
    switch (step.kind) {
      case "changeTier":
        return sim.changeTier(sub, step.tier);
      case "cancelAtPeriodEnd":
        return sim.setCancelAtPeriodEnd(sub, step.value);
      case "endTrial":
        return sim.endTrial(sub, { paid: step.paid });
      default:
        return sim[step.kind](sub);
    }
  } catch (thrown) {
    if (!(thrown instanceof SimStateError)) throw thrown;
  }
}

async function expectConverged(sim: StripeSim, sub: string): Promise<void> {
  const s = sim.subscriptions.get(sub)!;
  const ms = (v: number | null): number | null => (v === null ? null : v * 1000);
  const row = await subscriptionRow(db.sql, sub);
  expect({
    status: row?.status,
    tier: row?.tier,
    cancel: row?.cancel_at_period_end,
    canceledAt: row?.canceled_at?.getTime() ?? null,
    start: row?.current_period_start?.getTime(),
    end: row?.current_period_end?.getTime(),
    trialEnd: row?.trial_ends_at?.getTime() ?? null,
  }).toEqual({
    status: s.status,
    tier: s.tier,
    cancel: s.cancelAtPeriodEnd,
    canceledAt: ms(s.canceledAt),
    start: ms(s.periodStart),
    end: ms(s.periodEnd),
    trialEnd: ms(s.trialEnd),
  });
}

async function drain(inbox: StripeInbox): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const pass = await inbox.processPendingOnce();
    if (pass.events === 0) return;
  }
}

const trialStepArb: fc.Arbitrary<Step> = fc.oneof(
  tierArb.map((tier) => ({ kind: "changeTier" as const, tier })),
  fc.boolean().map((value) => ({ kind: "cancelAtPeriodEnd" as const, value })),
);

/**
 * A trial that ends unpaid (`paused`) and is resumed in the same second (what `stripe send
 * customer.subscription.resumed` does), with steps before and after on distinct seconds, and
 * optionally a cancellation in the same second as the last step.
 */
const orderedPairsArb = fc.record({
  tier: tierArb,
  before: fc.array(fc.tuple(trialStepArb, fc.constantFrom(1, 60)), { maxLength: 2 }),
  after: fc.array(fc.tuple(stepArb, fc.constantFrom(1, 60, 86_400)), { maxLength: 3 }),
  cancelInSameSecond: fc.boolean(),
});

function buildOrderedPairs(sim: StripeSim, clock: FakeClock, life: { tier: PaidTier; before: Array<[Step, number]>; after: Array<[Step, number]>; cancelInSameSecond: boolean }): string {
  const customer = sim.createCustomer({ email: `pairs-${sim.prefix}@example.com` });
  const sub = sim.createSubscription({ customer, tier: life.tier, trialDays: 14 });
  for (const [step, gap] of life.before) {
    clock.advance(gap);
    runStep(sim, sub, step);
  }
  clock.advance(1);
  runStep(sim, sub, { kind: "endTrial", paid: false });
  runStep(sim, sub, { kind: "resume" });
  for (const [step, gap] of life.after) {
    clock.advance(gap);
    runStep(sim, sub, step);
  }
  if (life.cancelInSameSecond) runStep(sim, sub, { kind: "cancelNow" });
  return sub;
}

function buildLifecycle(sim: StripeSim, clock: FakeClock, life: { tier: PaidTier; start: string; steps: Array<[Step, number]> }, minGap: number): string {
  const customer = sim.createCustomer({ email: `prop-${sim.prefix}@example.com` });
  const sub = sim.createSubscription({ customer, tier: life.tier, ...(life.start === "trial" ? { trialDays: 14 } : {}), failFirstPayment: life.start === "incomplete" });
  for (const [step, gap] of life.steps) {
    clock.advance(Math.max(minGap, gap));
    runStep(sim, sub, step);
  }
  return sub;
}

const choicesArb = (n: number, allowLoss: boolean) =>
  fc.record({
    order: fc.array(fc.nat(n * 2), { minLength: n, maxLength: n }),
    duplicate: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
    drop: fc.array(allowLoss ? fc.boolean() : fc.constant(false), { minLength: n, maxLength: n }),
    late: fc.array(allowLoss ? fc.boolean() : fc.constant(false), { minLength: n, maxLength: n }),
    processAfter: fc.array(fc.boolean(), { minLength: n, maxLength: n }),
  });

async function deliverInterleaved(events: readonly JsonObject[], choices: { order: number[]; duplicate: boolean[]; drop: boolean[]; late: boolean[]; processAfter: boolean[] }, inbox: StripeInbox): Promise<void> {
  const plan = planDeliveries(events, choices);
  for (const [i, delivery] of plan.entries()) {
    const [result] = await deliver(webhook.url, [delivery], SECRET);
    expect(result!.status).toBe(delivery.ageSeconds ? 400 : 200);
    if (choices.processAfter[i % choices.processAfter.length]) await inbox.processPendingOnce();
  }
}

describe("convergence", () => {
  test("API mode + catch-up: any delivery converges to the fake's state", async () => {
    const { metrics } = newMetrics();
    await fc.assert(
      fc.asyncProperty(
        lifecycleArb.chain((life) => fc.tuple(fc.constant(life), choicesArb(40, true))),
        async ([life, choices]) => {
          const clock = new FakeClock();
          const fake = await startFakeStripe({ clock });
          try {
            const startedAt = new Date(clock.now() * 1000);
            const sub = buildLifecycle(fake.sim, clock, life, 0);
            const stripe = fake.client();
            const inbox = new StripeInbox({ sql: db.sql, stripe, priceTiers: {}, metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 } });
            await deliverInterleaved(fake.sim.events.slice(0, 40), choices, inbox);
            await catchUpEvents({ sql: db.sql, stripe, priceTiers: {}, metrics, logger: silentLogger }, startedAt);
            await drain(inbox);
            await expectConverged(fake.sim, sub);
          } finally {
            await fake.close();
          }
        },
      ),
      { numRuns: 200 },
    );
  }, 180_000);

  test("payload mode: every event delivered at least once, distinct seconds: converges despite duplicates and reordering", async () => {
    const { metrics } = newMetrics();
    await fc.assert(
      fc.asyncProperty(
        lifecycleArb.chain((life) => fc.tuple(fc.constant(life), choicesArb(40, false))),
        async ([life, choices]) => {
          const clock = new FakeClock();
          const fake = await startFakeStripe({ clock });
          try {
            const sub = buildLifecycle(fake.sim, clock, life, 1);
            const inbox = new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 } });
            await deliverInterleaved(fake.sim.events.slice(0, 40), choices, inbox);
            await drain(inbox);
            await expectConverged(fake.sim, sub);
          } finally {
            await fake.close();
          }
        },
      ),
      { numRuns: 100 },
    );
  }, 180_000);

  test("payload mode: same-second pairs whose event types say the order (paused → resumed, anything → deleted) converge in any delivery order", async () => {
    const { metrics } = newMetrics();
    await fc.assert(
      fc.asyncProperty(
        orderedPairsArb.chain((life) => fc.tuple(fc.constant(life), choicesArb(40, false))),
        async ([life, choices]) => {
          const clock = new FakeClock();
          const fake = await startFakeStripe({ clock });
          try {
            const sub = buildOrderedPairs(fake.sim, clock, life);
            const inbox = new StripeInbox({ sql: db.sql, stripe: null, priceTiers: {}, metrics, logger: silentLogger, backoff: { minMs: 0, maxMs: 0 } });
            await deliverInterleaved(fake.sim.events.slice(0, 40), choices, inbox);
            await drain(inbox);
            await expectConverged(fake.sim, sub);
          } finally {
            await fake.close();
          }
        },
      ),
      { numRuns: 100 },
    );
  }, 180_000);
});
