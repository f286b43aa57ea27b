/**
 * A Dokku host that hangs, through the daemon's controller (real Postgres, real SSH to two
 * sandbox hosts): it accepts TCP and then says nothing, and commands already running on it stop
 * mid-command (no more output, no exit status). Each command costs at most DOKKU_COMMAND_TIMEOUT,
 * the host is reported down on /metrics, an instance on the other host converges meanwhile,
 * and everything heals when the host answers again.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { upsertHost } from "../../src/state/hosts.ts";
import { createInstance } from "../sql/support.ts";
import { appsOf, eventually, type Harness, SEED_SUBDOMAINS, startHarness } from "./harness.ts";

const COMMAND_TIMEOUT_S = 20;

let h: Harness;
let healthy: Sandbox;

beforeAll(async () => {
  // Two workers for four instances on the host that will hang: more keys on it than workers,
  // as on a real host with hundreds of instances.
  h = await startHarness({ env: { MAX_CONCURRENT_RECONCILES: "2", DOKKU_COMMAND_TIMEOUT: `${COMMAND_TIMEOUT_S}s` } });
  await eventually("the seed running on host sandbox", () => SEED_SUBDOMAINS.flatMap(appsOf).every((app) => h.sandbox.control.app(app)?.running === true), 120_000);
  healthy = await startSandbox({ dokkuVersion: "0.38", authorizedKeys: null });
  await upsertHost(h.db.sql, { name: "healthy", sshUrl: healthy.sshUrl, ingressUrl: healthy.ingressUrl, hostKey: healthy.hostKey, capacity: 1000, maxCommandBytes: healthy.maxCommandBytes });
}, 180_000);

afterAll(async () => {
  h?.sandbox.control.setUnresponsive(false);
  await h?.stop();
  await healthy?.close();
});

async function hostUp(host: string): Promise<number | undefined> {
  const text = await h.registry.metrics();
  const match = new RegExp(`^mindroom_dokku_host_up\\{host="${host}"\\} (\\d)`, "m").exec(text);
  return match ? Number(match[1]) : undefined;
}

/** How many commands on `host` took longer than `seconds` (a histogram bucket bound). */
async function commandsSlowerThan(host: string, seconds: number): Promise<number> {
  const text = await h.registry.metrics();
  let total = 0;
  let within = 0;
  for (const match of text.matchAll(/^mindroom_dokku_command_seconds_(bucket|count)\{([^}]*)\} (\d+)/gm)) {
    const labels = match[2]!;
    if (!labels.includes(`host="${host}"`)) continue;
    if (match[1] === "count") total += Number(match[3]);
    else if (labels.includes(`le="${seconds}"`)) within += Number(match[3]);
  }
  return total - within;
}

async function converged(): Promise<boolean> {
  const rows = await h.db.sql<{ ok: boolean }[]>`select status = 'running' and generation = observed_generation as ok from instances`;
  return rows.length > 0 && rows.every((row) => row.ok);
}

describe("a Dokku host that hangs, under the controller", () => {
  test("each command costs at most the timeout, the host reads down, and an instance on the other host converges meanwhile", async () => {
    expect(await hostUp("sandbox")).toBe(1);
    h.sandbox.control.setUnresponsive(true);
    // Drift on the hung host, for the controller to find once it answers again.
    await h.sandbox.control.stopAppByHand("demo-pro-frontend");
    await eventually("host sandbox reported down", async () => (await hostUp("sandbox")) === 0, 3 * COMMAND_TIMEOUT_S * 1000);
    // The resync waves keep giving the workers the hung host's instances; a new instance placed
    // on the other host must not wait behind them.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    // In one transaction: the running controller never sees the active subscription without its
    // instance (it would provision one of its own, and that and this insert could deadlock).
    const created = await h.db.sql.begin((tx) => createInstance(tx, { tier: "starter", status: "pending" }));
    const [row] = await h.db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${created.instanceId}`;
    const started = Date.now();
    await eventually("the new instance running on the healthy host", () => appsOf(row!.subdomain).every((app) => healthy.control.app(app)?.running === true), 60_000);
    // It never waited for a command on the hung host to time out (a provision takes about 2 s here).
    expect(Date.now() - started).toBeLessThan((COMMAND_TIMEOUT_S * 1000) / 2);
    expect(await hostUp("healthy")).toBe(1);
    // Keep it hung through a few more timeouts: still nothing over the bound, other host still served.
    await new Promise((resolve) => setTimeout(resolve, 2 * COMMAND_TIMEOUT_S * 1000));
    expect(await commandsSlowerThan("sandbox", 30)).toBe(0);
    expect(await hostUp("sandbox")).toBe(0);
    expect(h.sandbox.control.app("demo-pro-frontend")?.running).toBe(false);
  }, 180_000);

  test("the host answers again: reported up, its drift repaired, every instance converged, no pending journal row", async () => {
    h.sandbox.control.setUnresponsive(false);
    await eventually("host sandbox reported up", async () => (await hostUp("sandbox")) === 1, 60_000);
    await eventually("the stopped app running again", () => h.sandbox.control.app("demo-pro-frontend")?.running === true, 60_000);
    await eventually("every instance converged", converged, 60_000);
    await eventually("no pending journal row", async () => {
      const [ops] = await h.db.sql<{ pending: number }[]>`select count(*)::int as pending from instance_operations where status = 'pending'`;
      return ops!.pending === 0;
    }, 30_000);
  }, 120_000);
});
