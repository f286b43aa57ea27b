import { Readable, Writable } from "node:stream";

import { Registry } from "prom-client";
import { describe, expect, test } from "vitest";

import { createDokkuDriverWith, DokkuCommandError } from "../../src/drivers/dokku/driver.ts";
import { HOST_ERROR_COMMANDS, HOST_ERROR_REASONS } from "../../src/drivers/dokku/metrics.ts";
import type { RunOptions, RunResult } from "../../src/drivers/dokku/ssh.ts";
import { TerminalError } from "../../src/errors.ts";
import type { HostRef } from "../../src/reconciler/types.ts";
import { FakeCommandRunner, fixture } from "./fake-runner.ts";

const host: HostRef = { id: "h1", name: "dokku-1", sshUrl: "ssh://dokku@127.0.0.1:1", hostKey: null };

function setup(version: string, options: { hostConcurrency?: number } = {}) {
  const runner = new FakeCommandRunner(version);
  const registry = new Registry();
  const driver = createDokkuDriverWith({ runnerFor: () => runner }, { registry, ...options });
  return { runner, registry, driver };
}

function bulkPs(apps: number): string {
  const one = fixture("0.38", "ps-report-app.out");
  return Array.from({ length: apps }, (_, i) => one.replace("alpha-backend", `app-${i}`)).join("");
}

async function caught(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

describe.each(["0.30", "0.34", "0.38"])("driver on Dokku %s (recorded output)", (version) => {
  test("observeHost: apps with state, Dokku version", async () => {
    const { runner, driver } = setup(version);
    runner.onFixture("ps:report", { out: "ps-report-bulk.out" });
    const observed = await driver.observeHost(host);
    expect(observed.dokkuVersion.startsWith(version)).toBe(true);
    expect([...observed.apps.values()].filter((a) => a.running).map((a) => a.app)).toEqual(["alpha-backend"]);
    expect(observed.apps.get("beta-frontend")).toEqual({ app: "beta-frontend", deployed: true, running: false });
  });

  test("observeApp: deep state from every report", async () => {
    const { runner, driver } = setup(version);
    runner
      .onFixture("ps:report alpha-backend", { out: "ps-report-app.out" })
      .onFixture("config:export --format json alpha-backend", { out: "config-export.json.out" })
      .onFixture("domains:report alpha-backend", { out: "domains-report.out" })
      .onFixture("storage:list alpha-backend --format json", { out: "storage-list.json.out" })
      .onFixture("resource:report alpha-backend", { out: "resource-report.out" })
      .onFixture("apps:report alpha-backend", { out: "apps-report-app.out" })
      .on("letsencrypt:active alpha-backend", { stdout: "true\n" });
    expect(await driver.observeApp(host, "alpha-backend")).toEqual({
      app: "alpha-backend",
      deployed: true,
      running: true,
      deep: {
        specHash: "sha256-abc123",
        domains: ["alpha-api.mindroom.example", "www.alpha.example"],
        mounts: ["/var/lib/dokku/data/storage/alpha-backend-data:/app/storage"],
        resources: { memoryMb: 512, cpus: 0.5 },
        image: "ghcr.io/mindroom/backend:1.2.3",
        tls: true,
        env: { DOKKU_APP_RESTORE: "1", MINDROOM_SPEC_HASH: "sha256-abc123", MINDROOM_TIER: "starter" },
      },
    });
  });

  test("observeApp: a missing app (exit 20) is undefined", async () => {
    const { runner, driver } = setup(version);
    runner.onFixture((line) => line.includes(" ghost"), { err: "app-missing.err", exitCode: 20 });
    expect(await driver.observeApp(host, "ghost")).toBeUndefined();
  });

  test("already-so answers are success", async () => {
    const { runner, driver } = setup(version);
    const unchanged = version === "0.38" ? { out: "git-unchanged.out" } : { err: "git-unchanged.err" };
    runner
      .onFixture("apps:create alpha-backend", { err: "apps-create-taken.err", exitCode: 1 })
      .onFixture("git:from-image alpha-backend nginx:1.27", { ...unchanged, exitCode: 1 })
      .onFixture((l) => l.startsWith("storage:mount"), { err: "mount-exists.err", exitCode: 1 })
      .on("storage:ensure-directory alpha-data", { stdout: "-----> Ensuring /var/lib/dokku/data/storage/alpha-data exists\n" })
      .onFixture("ps:start alpha-backend", { err: "already-running.err" })
      .onFixture("--force apps:destroy alpha-backend", { err: "app-missing.err", exitCode: 20 });
    await driver.apply(host, { kind: "createApp", app: "alpha-backend" });
    await driver.apply(host, { kind: "deployImage", app: "alpha-backend", image: "nginx:1.27" });
    await driver.apply(host, { kind: "ensureStorage", app: "alpha-backend", storage: { entry: "alpha-data", mountPath: "/app/storage" } });
    await driver.apply(host, { kind: "start", app: "alpha-backend" });
    await driver.apply(host, { kind: "destroyApp", app: "alpha-backend" });
  });

  test("deploy lock is retryable, plugin missing is terminal, with hidden context", async () => {
    const { runner, driver, registry } = setup(version);
    const lock = version === "0.38" ? { out: "deploy-lock.out" } : { err: "deploy-lock.err" };
    runner.onFixture("git:from-image alpha-backend nginx:1.28", { ...lock, exitCode: 1 });
    const locked = await caught(driver.apply(host, { kind: "deployImage", app: "alpha-backend", image: "nginx:1.28" }));
    expect(locked).toBeInstanceOf(DokkuCommandError);
    expect((locked as DokkuCommandError).reason).toBe("DeployLocked");
    expect(Object.keys(locked)).not.toContain("argv");
    expect((locked as Error & { argv: string[] }).argv).toEqual(["git:from-image", "alpha-backend", "nginx:1.28"]);
    expect((locked as Error & { exitCode: number }).exitCode).toBe(1);
    const tls = await caught(driver.apply(host, { kind: "enableTls", app: "alpha-backend" }));
    expect(tls).toBeInstanceOf(TerminalError);
    expect((tls as TerminalError).reason).toBe("PluginMissing");
    const metrics = await registry.getSingleMetricAsString("mindroom_dokku_command_errors_total");
    expect(metrics).toContain('command="git:from-image",reason="DeployLocked"');
    expect(metrics).not.toContain("alpha-backend");
  });
});

describe("driver behaviour", () => {
  test("observeHost sends the same number of commands for 10 and 1000 apps; version is probed once", async () => {
    const counts: number[] = [];
    for (const apps of [10, 1000]) {
      const { runner, driver } = setup("0.38");
      runner.on("ps:report", { stdout: bulkPs(apps) });
      const first = await driver.observeHost(host);
      await driver.observeHost(host);
      expect(first.apps.size).toBe(apps);
      counts.push(runner.calls.length);
      expect(runner.calls.filter((c) => c === "version")).toHaveLength(1);
    }
    expect(counts[0]).toBe(counts[1]);
  });

  test("a host's error series exist at 0 from its first command, and count from there", async () => {
    const { runner, driver, registry } = setup("0.38");
    const errors = async () => (await registry.getSingleMetric("mindroom_dokku_command_errors_total")!.get()).values;
    expect(await errors(), "no host seen yet: no series").toEqual([]);
    runner.on("ps:report", { stdout: bulkPs(1) });
    await driver.observeHost(host);
    const initial = await errors();
    expect(initial).toHaveLength(HOST_ERROR_COMMANDS.length * HOST_ERROR_REASONS.length);
    expect(initial.every((s) => s.value === 0 && s.labels.host === "dokku-1")).toBe(true);
    expect(initial.map((s) => `${s.labels.command} ${s.labels.reason}`)).toContain("ps:report Timeout");
    await driver.observeHost(host);
    expect((await errors()).every((s) => s.value === 0), "seeing the host again resets nothing and adds nothing").toBe(true);
    runner.on("ps:report alpha-backend", { stdout: "", stderr: " !     boom\n", exitCode: 1 });
    await caught(driver.observeApp(host, "alpha-backend"));
    const failed = (await errors()).filter((s) => s.value > 0);
    expect(failed.map((s) => s.labels)).toEqual([{ host: "dokku-1", command: "ps:report", reason: "CommandFailed" }]);
  });

  test("unsafe input is refused before the runner sees anything", async () => {
    const { runner, driver } = setup("0.38");
    const refusals = [
      driver.apply(host, { kind: "createApp", app: "Bad_Name" }),
      driver.apply(host, { kind: "deployImage", app: "ok", image: "img:1 ; rm" }),
      driver.apply(host, { kind: "setConfig", app: "ok", env: { BIG: "x".repeat(100 * 1024) } }),
      driver.apply(host, { kind: "setConfig", app: "ok", env: { "NOT-A-KEY": "v" } }),
      driver.transfer(host, { action: { kind: "backup", app: "ok", storage: { entry: "../etc", mountPath: "/x" }, backupType: "manual", backupId: null }, sink: new Writable() }),
      driver.transfer(host, { action: { kind: "restore", app: "ok", storage: { entry: "../etc", mountPath: "/x" }, backupId: "b", restoreId: "r" }, source: Readable.from([]) }),
    ];
    for (const refusal of refusals) expect(await caught(refusal)).toBeInstanceOf(TerminalError);
    expect(runner.calls).toEqual([]);
  });

  test("setConfig sends base64 pairs only, and a config failure message carries no value", async () => {
    const { runner, driver } = setup("0.38");
    runner.on((l) => l.startsWith("--quiet config:set"), { exitCode: 1, stderr: " !     Invalid env pair: TOKEN=hunter2\n" });
    const err = await caught(driver.apply(host, { kind: "setConfig", app: "ok", env: { TOKEN: "hunter2 $(id)" } }));
    expect(runner.calls.filter((c) => c !== "version")).toEqual([`--quiet config:set --encoded --no-restart ok TOKEN=${Buffer.from("hunter2 $(id)").toString("base64")}`]);
    expect(err.message).not.toContain("hunter2");
    expect(JSON.stringify(err)).not.toContain("hunter2");
  });

  test("enableTls is skipped when the certificate is already active", async () => {
    const { runner, driver } = setup("0.38");
    runner.on("letsencrypt:active a1", { stdout: "true\n" });
    await driver.apply(host, { kind: "enableTls", app: "a1" });
    expect(runner.calls.filter((c) => c.startsWith("letsencrypt:enable"))).toEqual([]);
  });

  test("backup streams binary bytes untouched into the sink", async () => {
    const { runner, driver } = setup("0.30");
    const bytes = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]);
    runner.on("run a1 tar -C /app/storage -czf - .", { binary: bytes });
    const chunks: Buffer[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (chunks.push(chunk), cb()) });
    await driver.transfer(host, { action: { kind: "backup", app: "a1", storage: { entry: "a1-data", mountPath: "/app/storage" }, backupType: "manual", backupId: null }, sink });
    expect(Buffer.concat(chunks).equals(bytes)).toBe(true);
  });

  test("mutations: one at a time per app, at most hostConcurrency per host", async () => {
    const runner = new FakeCommandRunner("0.38");
    let active = 0;
    let peak = 0;
    const perApp = new Map<string, number>();
    let peakPerApp = 0;
    const gates: Array<() => void> = [];
    runner.run = async (argv: readonly string[], _opts?: RunOptions): Promise<RunResult> => {
      if (argv[0] === "version") return { exitCode: 0, stdout: "dokku version 0.38.27\n", stderr: "" };
      const app = argv[1] ?? "";
      active += 1;
      perApp.set(app, (perApp.get(app) ?? 0) + 1);
      peak = Math.max(peak, active);
      peakPerApp = Math.max(peakPerApp, perApp.get(app) ?? 0);
      await new Promise<void>((resolve) => gates.push(resolve));
      active -= 1;
      perApp.set(app, (perApp.get(app) ?? 0) - 1);
      return { exitCode: 0, stdout: "", stderr: "" };
    };
    const driver = createDokkuDriverWith({ runnerFor: () => runner }, { registry: new Registry(), hostConcurrency: 3 });
    const work = [];
    for (let i = 0; i < 12; i++) work.push(driver.apply(host, { kind: "restart", app: `app-${i % 4}` }));
    const all = Promise.all(work);
    let finished = false;
    void all.then(() => (finished = true));
    while (!finished) {
      await new Promise((resolve) => setImmediate(resolve));
      gates.shift()?.();
    }
    await all;
    expect(peak).toBe(3);
    expect(peakPerApp).toBe(1);
  });
});
