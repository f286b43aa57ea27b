/**
 * `reconcile ID` while a daemon leads: the request goes to the leader, which runs a deep pass, so
 * a config value edited by hand on the host (drift a shallow pass cannot see) is put back at once,
 * long before the slow deep rotation (set to an hour here) would find it. `sub_...` ids resolve.
 */

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { runCli } from "../helpers/cli.ts";
import { appsOf, eventually, type Harness, SEED_SUBDOMAINS, startHarness } from "./harness.ts";

let h: Harness;
let env: Record<string, string>;

beforeAll(async () => {
  h = await startHarness({ tuning: { deepObserveIntervalMs: 60 * 60_000 } });
  await eventually("the seed converges", () => SEED_SUBDOMAINS.flatMap(appsOf).every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
  await eventually("status written", async () => {
    const [row] = await h.db.sql<{ n: number }[]>`select count(*)::int as n from instances where status = 'running' and generation = observed_generation`;
    return row!.n === 4;
  });
  env = { PATH: process.env.PATH ?? "", DATABASE_URL: h.db.url, DOKKU_HOSTS: h.sandbox.sshUrl, SSH_PRIVATE_KEY: h.sshPrivateKey, MASTER_KEY: h.masterKey, LOG_LEVEL: "warn" };
}, 150_000);

afterAll(async () => {
  await h?.stop();
});

function cli(...args: string[]) {
  return runCli(env, args, 150_000);
}

describe("reconcile while a daemon leads", () => {
  test("is a deep pass: a config value edited on the host is put back, and plan is clean again", async () => {
    h.sandbox.control.setConfigByHand("demo-free-backend", "MAX_AGENTS", "999");
    const before = await cli("plan", "--instance", "demo-free");
    expect(before.status, before.stdout + before.stderr).toBe(1);
    expect(before.stdout).toMatch(/set config on demo-free-backend/);

    const result = await cli("reconcile", "demo-free");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/asked the running controller .* for a deep pass of demo-free/);
    expect(result.stdout).toMatch(/^demo-free: running \(deep pass by the controller .*\); [1-9]\d* actions? applied$/m);
    expect(result.stdout).toMatch(/done: ~ set config on demo-free-backend/);
    expect(h.sandbox.control.app("demo-free-backend")?.config.MAX_AGENTS).not.toBe("999");

    const after = await cli("plan", "--instance", "demo-free");
    expect(after.status, after.stdout + after.stderr).toBe(0);
  }, 120_000);

  test("reconcile and plan --instance accept a Stripe subscription id", async () => {
    const plan = await cli("plan", "--instance", "sub_demo_pro");
    expect(plan.status, plan.stdout + plan.stderr).toBe(0);
    expect(plan.stdout).toMatch(/^= demo-pro \(instance /m);
    const result = await cli("reconcile", "sub_demo_pro");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^demo-pro: running \(deep pass by the controller .*\); 0 actions applied$/m);
  }, 120_000);
});
