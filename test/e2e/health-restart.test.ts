/**
 * Health drives the reconciler: a component failing three probes in a row is restarted (at most
 * once per 10 minutes); after three restarts without recovery the instance is marked failed and
 * one alert is queued for the incident.
 */
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { HealthProber } from "../../src/sources/health.ts";
import { appsOf, eventually, type Harness, startHarness } from "./harness.ts";

let h: Harness;
let prober: HealthProber;
let instanceId: string;

beforeAll(async () => {
  h = await startHarness();
  await eventually("demo-pro running", () => appsOf("demo-pro").every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
  await eventually("demo-pro recorded running", async () => {
    const [row] = await h.db.sql<{ status: string }[]>`select status::text as status from instances where subdomain = 'demo-pro'`;
    return row?.status === "running";
  });
  const [row] = await h.db.sql<{ id: string }[]>`select id from instances where subdomain = 'demo-pro'`;
  instanceId = row!.id;
  prober = new HealthProber({
    sql: h.db.sql,
    registry: h.registry,
    domainFor: (subdomain, component) => ({ frontend: `${subdomain}.mindroom.localhost`, backend: `${subdomain}-api.mindroom.localhost`, matrix: `${subdomain}-matrix.mindroom.localhost` })[component],
    onUnhealthy: (subscriptionId) => void h.runtime.enqueue(subscriptionId),
    logger: pino({ level: "silent" }),
    timeoutMs: 2000,
    now: () => h.now(),
  });
}, 150_000);

afterAll(async () => {
  await h?.stop();
});

async function restarts(): Promise<number> {
  const [row] = await h.db.sql<{ n: number }[]>`
    select count(*)::int as n from instance_operations where instance_id = ${instanceId} and action = 'restart' and target = 'demo-pro-backend' and status = 'succeeded'`;
  return row!.n;
}

async function probeRounds(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await prober.probeOnce(instanceId);
}

describe("health-driven restarts", () => {
  test("three failed probes restart the backend once; three restarts without recovery mark the instance failed and alert once", async () => {
    h.sandbox.control.setUnhealthy("demo-pro-backend", true);
    await probeRounds(2);
    expect(await restarts()).toBe(0);
    await probeRounds(1);
    await eventually("the backend restarted", async () => (await restarts()) === 1, 20_000);

    // Still failing inside the 10-minute cooldown: no second restart.
    await probeRounds(3);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await restarts()).toBe(1);

    for (let expected = 2; expected <= 3; expected++) {
      h.advance(11 * 60_000);
      await probeRounds(3);
      await eventually(`restart ${expected}`, async () => (await restarts()) === expected, 20_000);
    }
    h.advance(11 * 60_000);
    await probeRounds(3);
    await eventually("instance failed", async () => {
      const [row] = await h.db.sql<{ status: string }[]>`select status::text as status from instances where id = ${instanceId}`;
      return row?.status === "failed";
    }, 20_000);
    await probeRounds(3);
    h.runtime.enqueue((await h.db.sql<{ s: string }[]>`select subscription_id as s from instances where id = ${instanceId}`)[0]!.s);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const alerts = await h.db.sql`select kind from notifications where instance_id = ${instanceId} and kind = 'health_alert'`;
    expect(alerts).toHaveLength(1);
    expect(await restarts()).toBe(3);
  }, 180_000);
});
