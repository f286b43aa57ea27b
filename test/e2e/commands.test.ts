/**
 * The operator commands against a converged system: `plan` exits 0 when nothing would change and
 * 1 after an app is destroyed by hand (and names it); `status` explains; `reconcile` repairs;
 * `hosts` lists, adds and removes.
 */

import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createDokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { runCli } from "../helpers/cli.ts";
import { appsOf, eventually, type Harness, SEED_SUBDOMAINS, startHarness } from "./harness.ts";

let h: Harness;
let env: Record<string, string>;

beforeAll(async () => {
  h = await startHarness();
  await eventually("the seed converges", () => SEED_SUBDOMAINS.flatMap(appsOf).every((app) => h.sandbox.control.app(app)?.running === true), 90_000);
  await eventually("status written", async () => {
    const [row] = await h.db.sql<{ n: number }[]>`select count(*)::int as n from instances where status = 'running' and generation = observed_generation`;
    return row!.n === 4;
  });
  await h.stopController();
  // DOKKU_HOSTS (any) selects production mode: keys come from the environment, as the harness's.
  env = { PATH: process.env.PATH ?? "", DATABASE_URL: h.db.url, DOKKU_HOSTS: h.sandbox.sshUrl, SSH_PRIVATE_KEY: h.sshPrivateKey, MASTER_KEY: h.masterKey, LOG_LEVEL: "warn" };
}, 150_000);

afterAll(async () => {
  await h?.stop();
});

/** Runs the CLI without blocking this process, whose event loop serves the sandbox host. */
function cli(...args: string[]) {
  return runCli(env, args, 120_000);
}

describe("operator commands", () => {
  test("plan exits 0 on a converged system", async () => {
    const result = await cli("plan");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/0 changes planned across 4 subscriptions/);
  });

  test("plan exits 1 after an app is destroyed by hand, and shows what it would do", async () => {
    await h.sandbox.control.destroyAppByHand("demo-pro-frontend");
    const result = await cli("plan", "--instance", "demo-pro");
    expect(result.status, result.stdout + result.stderr).toBe(1);
    expect(result.stdout).toMatch(/\+ create app demo-pro-frontend/);
    expect(result.stdout).not.toMatch(/MINDROOM_INSTANCE_ID=|SECRET=/);
    expect(h.sandbox.control.app("demo-pro-frontend")).toBeUndefined();
  });

  test("reconcile repairs it now, and plan is clean again", async () => {
    const result = await cli("reconcile", "demo-pro");
    expect(result.status, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/done: \+ create app demo-pro-frontend/);
    expect(h.sandbox.control.app("demo-pro-frontend")?.running).toBe(true);
    expect((await cli("plan", "--instance", "demo-pro")).status).toBe(0);
  });

  test("plan reports an app that belongs to no instance as an orphan, and leaves it alone", async () => {
    // An app named like an instance's component, created on the host by hand.
    const driver = createDokkuDriver({ privateKey: h.sshPrivateKey, registry: new Registry() });
    const orphan = "leftover-backend";
    await driver.apply({ id: "h", name: "sandbox", sshUrl: h.sandbox.sshUrl, hostKey: h.sandbox.hostKey }, { kind: "createApp", app: orphan });
    await driver.close();
    const result = await cli("plan");
    expect(result.stdout).toContain(`! orphan app ${orphan} on host sandbox`);
    expect(h.sandbox.control.app(orphan)).toBeDefined();
  });

  test("status shows every instance and why one is not converged", async () => {
    await h.db.sql`update instances set reconcile_paused = true where subdomain = 'demo-free'`;
    // As the prober leaves it after a healthy round (this harness probes hourly).
    await h.db.sql`update instances set health_status = 'healthy'`;
    const result = await cli("status");
    expect(result.status).toBe(0);
    for (const subdomain of SEED_SUBDOMAINS) expect(result.stdout).toContain(subdomain);
    expect(result.stdout).toMatch(/demo-free .*reconcile paused/);
    expect(result.stdout).toMatch(/stripe inbox: 0 pending/);
    // DESIRED is the computed phase and why; HEALTH is "-" for an instance not meant to run.
    expect(result.stdout).toMatch(/^demo-free +free +active +running \(billing, paused\) +running +healthy /m);
    expect(result.stdout).toMatch(/^demo-starter +starter +active +running \(billing\) +running +healthy /m);
    await h.db.sql`update instances set desired_state = 'stopped' where subdomain = 'demo-pro'`;
    await h.db.sql`update subscriptions set status = 'canceled', canceled_at = now() where id = (select subscription_id from instances where subdomain = 'demo-enterprise')`;
    const lowered = await cli("status");
    expect(lowered.stdout).toMatch(/^demo-pro +professional +active +stopped \(override\) +running +- /m);
    expect(lowered.stdout).toMatch(/^demo-enterprise +enterprise +canceled +stopped \(billing\) +running +- /m);
    await h.db.sql`update instances set desired_state = null where subdomain = 'demo-pro'`;
    await h.db.sql`update subscriptions set status = 'active', canceled_at = null where id = (select subscription_id from instances where subdomain = 'demo-enterprise')`;
  });

  test("plan for an unknown instance exits 2 with a clear message", async () => {
    const result = await cli("plan", "--instance", "no-such-instance");
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/no instance or subscription matches "no-such-instance"/);
  });

  test("doctor checks the database, the host over SSH and Stripe, and flags a dead-lettered event", async () => {
    const noSecret = await cli("doctor");
    expect(noSecret.status).toBe(1);
    expect(noSecret.stdout).toMatch(/^FAIL {2}stripe webhook: STRIPE_WEBHOOK_SECRET is not set/m);
    env.STRIPE_WEBHOOK_SECRET = "whsec_doctor_test";
    const healthy = await cli("doctor");
    expect(healthy.status, healthy.stdout + healthy.stderr).toBe(0);
    expect(healthy.stdout).toMatch(/^ok {4}database: reachable, at migration \d+/m);
    expect(healthy.stdout).toMatch(/^ok {4}host sandbox: Dokku 0\.38\.27, \d+ apps/m);
    await h.db.sql`insert into stripe_events (id, type, created, payload, status, last_error) values ('evt_doctor', 'customer.updated', now(), '{}', 'dead', 'boom')`;
    const sick = await cli("doctor");
    expect(sick.status).toBe(1);
    expect(sick.stdout).toMatch(/^FAIL {2}stripe inbox: 1 dead-lettered events/m);
    await h.db.sql`delete from stripe_events where id = 'evt_doctor'`;
    delete env.STRIPE_WEBHOOK_SECRET;
  });

  test("hosts list, add and remove", async () => {
    expect((await cli("hosts", "add", "edge-1", "ssh://dokku@10.0.0.9:22", "--capacity", "50", "--region", "eu")).status).toBe(0);
    const list = await cli("hosts", "list");
    expect(list.stdout).toMatch(/edge-1\s+ssh:\/\/dokku@10\.0\.0\.9:22\s+eu\s+0\/50/);
    expect(list.stdout).toMatch(/sandbox\s+ssh:\/\/dokku@127\.0\.0\.1:\d+\s+-\s+4\/1000/);
    expect((await cli("hosts", "remove", "sandbox")).status).toBe(1);
    expect((await cli("hosts", "remove", "edge-1")).status).toBe(0);
    expect((await cli("hosts", "add", "bad name", "nope")).status).toBe(2);
  });
});

describe("usage errors and help", () => {
  test("unknown options, bad URLs and ports exit 2 with one line and no stack trace", async () => {
    const cases: Array<{ args: string[]; message: RegExp }> = [
      { args: ["plan", "--bogus"], message: /^mindroom-reconciler plan: Unknown option '--bogus'.*; run mindroom-reconciler plan --help$/ },
      { args: ["hosts", "add", "edge-2", "ssh://dokku@10.0.0.9:22", "--ingress-url", "ftp://x"], message: /^mindroom-reconciler hosts add: --ingress-url must be an http\(s\):\/\/ URL \(got "ftp:\/\/x"\)$/ },
      { args: ["hosts", "add", "edge-2", "ssh://dokku@h:99999"], message: /^mindroom-reconciler hosts add: port 99999 is not 1-65535 in ssh:\/\/dokku@h:99999$/ },
      { args: ["hosts", "add", "edge-2", "ssh://root@h:22"], message: /^mindroom-reconciler hosts add: the SSH user must be dokku, Dokku's own user \(got root in ssh:\/\/root@h:22\)$/ },
    ];
    for (const { args, message } of cases) {
      const result = await cli(...args);
      expect(result.status, `${args.join(" ")}: ${result.stderr}`).toBe(2);
      expect(result.stderr.split("\n")[0], args.join(" ")).toMatch(message);
      expect(result.stderr).not.toMatch(/^\s+at /m);
    }
  });

  test("every command answers --help with exit 0", async () => {
    for (const command of ["serve", "migrate", "seed", "plan", "status", "reconcile", "hosts", "sandbox", "stripe", "doctor", "bench"]) {
      const result = await cli(command, "--help");
      expect(result.status, command).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^usage: mindroom-reconciler ${command}`));
    }
  });

  test("guest commands print no log line at the default level", async () => {
    const { LOG_LEVEL: _level, ...defaults } = env;
    const result = await runCli(defaults, ["status"], 60_000);
    expect(result.stderr).toBe("");
  });
});
