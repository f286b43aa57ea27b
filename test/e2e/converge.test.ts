import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { appsOf, eventually, type Harness, SEED_SUBDOMAINS, startHarness } from "./harness.ts";

let h: Harness;

beforeAll(async () => {
  h = await startHarness();
}, 120_000);

afterAll(async () => {
  await h?.stop();
});

function running(app: string): boolean {
  return h.sandbox.control.app(app)?.running === true;
}

async function instanceStatus(subdomain: string): Promise<{ status: string; generation: string; observed: string }> {
  const [row] = await h.db.sql<{ status: string; generation: string; observed: string }[]>`
    select status::text as status, generation::text as generation, observed_generation::text as observed
    from instances where subdomain = ${subdomain}`;
  return row!;
}

async function subscriptionOf(subdomain: string): Promise<string> {
  const [row] = await h.db.sql<{ subscription_id: string }[]>`select subscription_id from instances where subdomain = ${subdomain}`;
  return row!.subscription_id;
}

describe("the controller on the sandbox host", () => {
  test("the seed converges: every component of every instance deployed, running and recorded", async () => {
    await eventually("every seeded app running", () => SEED_SUBDOMAINS.flatMap(appsOf).every(running), 90_000);
    await eventually("every instance status running and converged", async () => {
      for (const subdomain of SEED_SUBDOMAINS) {
        const row = await instanceStatus(subdomain);
        if (row.status !== "running" || row.generation !== row.observed) return false;
      }
      return true;
    });
    const backend = h.sandbox.control.app("demo-pro-backend")!;
    expect(backend.config.MINDROOM_TIER).toBe("professional");
    expect(backend.config.MINDROOM_SPEC_HASH).toMatch(/^[0-9a-f]{32}$/);
    expect(backend.domains).toEqual(["demo-pro-api.mindroom.localhost"]);
    const [ops] = await h.db.sql<{ pending: number }[]>`select count(*)::int as pending from instance_operations where status = 'pending'`;
    expect(ops!.pending).toBe(0);
    // One welcome email per instance, queued once and delivered by the outbox.
    await eventually("welcome notifications delivered", async () => {
      const rows = await h.db.sql<{ sent: boolean }[]>`select sent_at is not null as sent from notifications where kind = 'welcome'`;
      return rows.length === 4 && rows.every((row) => row.sent);
    });
  });

  test("desired_state = stopped stops every component within 2 s, and running resumes them", async () => {
    await eventually("demo-starter running", () => appsOf("demo-starter").every(running), 60_000);
    await h.db.sql`update instances set desired_state = 'stopped' where subdomain = 'demo-starter'`;
    const stoppedAt = Date.now();
    await eventually("demo-starter stopped", () => appsOf("demo-starter").every((app) => !running(app)), 10_000);
    expect(Date.now() - stoppedAt).toBeLessThan(2_000);
    await eventually("status stopped", async () => (await instanceStatus("demo-starter")).status === "stopped");
    await h.db.sql`update instances set desired_state = 'running' where subdomain = 'demo-starter'`;
    await eventually("demo-starter running again", () => appsOf("demo-starter").every(running), 10_000);
  });

  test("past_due keeps running through the grace period, then stops", async () => {
    await eventually("demo-free running", () => appsOf("demo-free").every(running), 60_000);
    await h.db.sql`update subscriptions set status = 'past_due' where id = ${await subscriptionOf("demo-free")}`;
    await eventually("the pass after past_due", async () => (await instanceStatus("demo-free")).generation === (await instanceStatus("demo-free")).observed);
    expect(appsOf("demo-free").every(running)).toBe(true);
    h.advance(8 * 24 * 3600 * 1000);
    h.runtime.enqueue(await subscriptionOf("demo-free"));
    await eventually("demo-free stopped after grace", () => appsOf("demo-free").every((app) => !running(app)), 20_000);
    h.advance(-8 * 24 * 3600 * 1000);
    await h.db.sql`update subscriptions set status = 'active' where id = ${await subscriptionOf("demo-free")}`;
    await eventually("demo-free running after payment", () => appsOf("demo-free").every(running), 20_000);
  });

  test("a tier change re-renders resources and environment", async () => {
    await eventually("demo-starter backend running", () => running("demo-starter-backend"), 60_000);
    const before = h.sandbox.control.app("demo-starter-backend")!;
    expect(before.config.MINDROOM_TIER).toBe("starter");
    await h.db.sql`update subscriptions set tier = 'enterprise' where id = ${await subscriptionOf("demo-starter")}`;
    await eventually("enterprise environment", () => h.sandbox.control.app("demo-starter-backend")?.config.MINDROOM_TIER === "enterprise", 20_000);
    // Config is set before resources within the pass: wait for the pass to converge.
    await eventually("converged on the new tier", async () => {
      const row = await instanceStatus("demo-starter");
      return row.generation === row.observed && row.status === "running";
    }, 20_000);
    const after = h.sandbox.control.app("demo-starter-backend")!;
    expect(after.config.MAX_AGENTS).toBe("unlimited");
    expect(JSON.stringify(after.limits)).not.toEqual(JSON.stringify(before.limits));
    expect(after.running).toBe(true);
  });

  test("an app destroyed by hand is recreated; config edited by hand is put back", async () => {
    await eventually("demo-enterprise running", () => appsOf("demo-enterprise").every(running), 60_000);
    await h.sandbox.control.destroyAppByHand("demo-enterprise-frontend");
    expect(h.sandbox.control.app("demo-enterprise-frontend")).toBeUndefined();
    await eventually("frontend recreated and running", () => running("demo-enterprise-frontend"), 20_000);
    const hash = h.sandbox.control.app("demo-enterprise-backend")!.config.MINDROOM_SPEC_HASH;
    h.sandbox.control.setConfigByHand("demo-enterprise-backend", "MINDROOM_SPEC_HASH", "edited-by-hand");
    await eventually("spec hash restored", () => h.sandbox.control.app("demo-enterprise-backend")?.config.MINDROOM_SPEC_HASH === hash, 20_000);
    // A value edited by hand with the hash left alone is found through the exported environment.
    h.sandbox.control.setConfigByHand("demo-enterprise-backend", "MAX_AGENTS", "999999");
    await eventually("edited value restored", () => h.sandbox.control.app("demo-enterprise-backend")?.config.MAX_AGENTS === "unlimited", 20_000);
    expect(h.sandbox.control.app("demo-enterprise-backend")?.config.MINDROOM_SPEC_HASH).toBe(hash);
    await h.sandbox.control.stopAppByHand("demo-enterprise-matrix");
    await eventually("app stopped by hand is started", () => running("demo-enterprise-matrix"), 20_000);
  });
});
