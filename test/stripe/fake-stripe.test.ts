import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { parseForm } from "../fake-stripe/form.ts";
import { FakeClock, type FakeStripe, startFakeStripe } from "../fake-stripe/index.ts";

let fake: FakeStripe;
beforeAll(async () => {
  fake = await startFakeStripe({ clock: new FakeClock(1_760_000_000) });
});
afterAll(async () => {
  await fake?.close();
});

describe("fake Stripe, through the real stripe-node client", () => {
  test("bracket-notation forms parse like Stripe's", () => {
    expect(parseForm("items[0][price]=p1&items[1][price]=p2&expand[]=a&expand[]=b&metadata[tier]=starter&created[gte]=5")).toEqual({
      items: [{ price: "p1" }, { price: "p2" }],
      expand: ["a", "b"],
      metadata: { tier: "starter" },
      created: { gte: "5" },
    });
  });

  test("create, update, cancel and list with pagination; 404 is resource_missing", async () => {
    const stripe = fake.client();
    const customer = await stripe.customers.create({ email: "fake@example.com" });
    const price = fake.sim.priceId("starter");
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) ids.push((await stripe.subscriptions.create({ customer: customer.id, items: [{ price }] })).id);
    const upgraded = await stripe.subscriptions.update(ids[0]!, { items: [{ id: "si_any", price: fake.sim.priceId("enterprise") }], cancel_at_period_end: true });
    expect(upgraded.items.data[0]!.price.lookup_key).toBe("enterprise_monthly");
    expect(upgraded.cancel_at_period_end).toBe(true);
    expect((await stripe.subscriptions.cancel(ids[1]!)).status).toBe("canceled");
    const listed: string[] = [];
    for await (const s of stripe.subscriptions.list({ customer: customer.id, status: "all", limit: 10, expand: ["data.items.data.price"] })) listed.push(s.id);
    expect(listed.sort()).toEqual([...ids].sort());
    const live: string[] = [];
    for await (const s of stripe.subscriptions.list({ customer: customer.id, limit: 100 })) live.push(s.id);
    expect(live).toHaveLength(22);
    const missing = await stripe.customers.retrieve("cus_missing").catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    expect((missing as Stripe.errors.StripeInvalidRequestError).code).toBe("resource_missing");
    expect((missing as Stripe.errors.StripeInvalidRequestError).statusCode).toBe(404);
  });

  test("events list pages with starting_after and ending_before, and filters by created", async () => {
    const stripe = fake.client();
    const all = fake.sim.events.map((e) => e.id as string).reverse();
    const page = await stripe.events.list({ limit: 5 });
    expect(page.data.map((e) => e.id)).toEqual(all.slice(0, 5));
    expect(page.has_more).toBe(true);
    const next = await stripe.events.list({ limit: 5, starting_after: all[4]! });
    expect(next.data.map((e) => e.id)).toEqual(all.slice(5, 10));
    const previous = await stripe.events.list({ limit: 5, ending_before: all[5]! });
    expect(previous.data.map((e) => e.id)).toEqual(all.slice(0, 5));
    expect((await stripe.events.list({ created: { gte: 1_760_000_001 } })).data).toEqual([]);
  });
});
