/**
 * Contract suite: the real driver over real SSH against the sandbox Dokku host, for each
 * supported Dokku version. Every action twice (idempotency), every observe, every fault, host-key
 * pinning, hostile inputs, and the channel limit.
 */
import { Writable } from "node:stream";
import { gunzipSync } from "node:zlib";

import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

import { createDokkuDriver, DokkuCommandError, type DokkuDriver, type DokkuDriverOptions } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { SshError } from "../../src/drivers/dokku/ssh.ts";
import { OutcomeUnknownError, TerminalError } from "../../src/errors.ts";
import type { HostRef } from "../../src/reconciler/types.ts";

const privateKey = generateEd25519KeyPair().private;
/**
 * The sandbox's SSH server (ssh2) drops packets over 35000 bytes; real sshd takes 256 KiB and
 * the real limit is Linux's 131072-byte argument. The driver is told the sandbox's limit.
 */
const SANDBOX_MAX_COMMAND_BYTES = 34_000;

async function caught(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

const HOSTILE: Record<string, string> = {
  QUOTES: `it's "double" and 'single' \\ back\\slash`,
  SUBST: "$(id) `id` $HOME ${PATH} ; rm -rf / | cat &",
  ECHO_FLAG: "-n",
  NEWLINES: "line1\nline2\n\nline4\r\n",
  UNICODE: "héllo wörld 🚀 日本語 \u0000?",
  FLAG_WORDS: " --quiet --app other --force --trace ",
  GLOB: "* ? [a-z]",
  EMPTY: "",
};

describe.each(["0.30", "0.34", "0.38"])("Dokku %s over SSH", (version) => {
  let sb: Sandbox;
  let host: HostRef;
  const drivers: DokkuDriver[] = [];

  function driver(overrides: Partial<DokkuDriverOptions> = {}): { driver: DokkuDriver; registry: Registry } {
    const registry = new Registry();
    const d = createDokkuDriver({ privateKey, registry, commandTimeoutMs: 15_000, maxCommandBytes: SANDBOX_MAX_COMMAND_BYTES, ...overrides });
    drivers.push(d);
    return { driver: d, registry };
  }

  async function hostUp(registry: Registry): Promise<number | undefined> {
    const metric = await registry.getSingleMetric("mindroom_dokku_host_up")?.get();
    return metric?.values.find((v) => v.labels.host === host.name)?.value;
  }

  beforeAll(async () => {
    sb = await startSandbox({ dokkuVersion: version, authorizedKeys: null });
    host = { id: `host-${version}`, name: `sandbox-${version}`, sshUrl: sb.sshUrl, hostKey: sb.hostKey };
  });
  afterAll(async () => {
    await Promise.all(drivers.map((d) => d.close()));
    await sb.close();
  });

  test("every action twice converges, and observe shows the result", async () => {
    const { driver: d } = driver();
    const app = "acme-backend";
    const storage = { entry: "acme-backend-data", mountPath: "/app/storage" };
    const actions = [
      { kind: "createApp", app },
      { kind: "ensureStorage", app, storage },
      { kind: "setConfig", app, env: { MINDROOM_SPEC_HASH: "hash-1", PORT: "8080" } },
      { kind: "setResources", app, resources: { memoryMb: 512, cpus: 0.5 } },
      { kind: "setDomains", app, domains: ["acme-api.mindroom.localhost"] },
      { kind: "deployImage", app, image: "ghcr.io/mindroom/backend:1.2.3" },
      { kind: "enableTls", app },
      { kind: "start", app },
      { kind: "stop", app },
      { kind: "start", app },
      { kind: "restart", app },
    ] as const;
    for (const action of actions) {
      await d.apply(host, action);
      await d.apply(host, action);
    }
    const observed = await d.observeApp(host, app);
    expect(observed).toMatchObject({ app, deployed: true, running: true });
    const { env, ...detail } = observed?.deep ?? {};
    expect(env).toMatchObject({ MINDROOM_SPEC_HASH: "hash-1", PORT: "8080" });
    expect(detail).toEqual({
      specHash: "hash-1",
      domains: ["acme-api.mindroom.localhost"],
      mounts: ["/var/lib/dokku/data/storage/acme-backend-data:/app/storage"],
      resources: { memoryMb: 512, cpus: 0.5 },
      image: "ghcr.io/mindroom/backend:1.2.3",
      tls: true,
    });
    expect(sb.control.app(app)?.config).toMatchObject({ MINDROOM_SPEC_HASH: "hash-1", PORT: "8080" });

    const shallow = await d.observeHost(host);
    expect(shallow.apps.get(app)).toEqual({ app, deployed: true, running: true });

    await d.apply(host, { kind: "stop", app });
    expect((await d.observeHost(host)).apps.get(app)?.running).toBe(false);

    for (let i = 0; i < 2; i++) await d.apply(host, { kind: "destroyApp", app });
    expect(await d.observeApp(host, app)).toBeUndefined();
    expect(sb.control.app(app)).toBeUndefined();
    for (let i = 0; i < 2; i++) await d.apply(host, { kind: "destroyStorage", app, storage });
  });

  test("backup streams a tar.gz of the storage entry", async () => {
    const { driver: d } = driver();
    const app = "bk-backend";
    const storage = { entry: "bk-backend-data", mountPath: "/app/storage" };
    await d.apply(host, { kind: "createApp", app });
    await d.apply(host, { kind: "ensureStorage", app, storage });
    await d.apply(host, { kind: "deployImage", app, image: "nginx:1.27" });
    const { writeFileSync } = await import("node:fs");
    writeFileSync(`${sb.control.storageDir(storage.entry)}/marker-file.txt`, "backup me");
    const chunks: Buffer[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (chunks.push(chunk), cb()) });
    await d.transfer(host, { action: { kind: "backup", app, storage, backupType: "manual", backupId: null }, sink });
    const tar = gunzipSync(Buffer.concat(chunks));
    expect(tar.includes(Buffer.from("marker-file.txt"))).toBe(true);
    expect(tar.includes(Buffer.from("backup me"))).toBe(true);
  });

  test("hostile config values arrive byte-exact; oversized ones are refused before sending", async () => {
    const { driver: d } = driver();
    const app = "hostile-app";
    await d.apply(host, { kind: "createApp", app });
    const big = "é🚀'\"$(x)\n".repeat(1_500); // ~22 KB of UTF-8: the largest that fits one sandbox packet
    const many = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`CHUNK_${i}`, `${i}`.repeat(15_000)]));
    const before0 = sb.control.commandCount;
    await d.apply(host, { kind: "setConfig", app, env: { ...HOSTILE, BIG: big, ...many } });
    expect(sb.control.commandCount - before0).toBeGreaterThan(2); // split across several config:set
    expect(sb.control.app(app)?.config).toMatchObject({ ...HOSTILE, BIG: big, ...many });
    for (const value of [HOSTILE.SUBST!, HOSTILE.NEWLINES!, HOSTILE.UNICODE!, HOSTILE.ECHO_FLAG!, big]) {
      await d.apply(host, { kind: "setConfig", app, env: { MINDROOM_SPEC_HASH: value } });
      expect((await d.observeApp(host, app))?.deep?.specHash).toBe(value);
    }
    const before = sb.control.commandCount;
    const refusals = [
      d.apply(host, { kind: "setConfig", app, env: { HUGE: "x".repeat(100 * 1024) } }),
      d.apply(host, { kind: "setConfig", app, env: { "BAD KEY": "v" } }),
      d.apply(host, { kind: "deployImage", app, image: "'nginx:1.27'" }),
      d.apply(host, { kind: "createApp", app: "$(id)" }),
      d.apply(host, { kind: "setDomains", app, domains: ["a.example.com -n"] }),
    ];
    for (const refusal of refusals) {
      const err = await caught(refusal);
      expect(err).toBeInstanceOf(TerminalError);
      expect(err.message).not.toContain("xxxxxxxx");
    }
    expect(sb.control.commandCount).toBe(before);
  });

  test("observeHost: constant commands, crashed and stopped apps are not running", async () => {
    const { driver: d } = driver();
    const [crashed, stopped] = await sb.control.seedApps(2, { prefix: "obs", serveHttp: false });
    await sb.control.crashApp(crashed!);
    await d.apply(host, { kind: "stop", app: stopped! });
    await d.observeHost(host); // version probed and cached
    const before = sb.control.commandCount;
    const observed = await d.observeHost(host);
    expect(sb.control.commandCount - before).toBe(1);
    expect(observed.apps.get(crashed!)).toEqual({ app: crashed, deployed: true, running: false });
    expect(observed.apps.get(stopped!)?.running).toBe(false);
    expect(observed.dokkuVersion.startsWith(version)).toBe(true);
  });

  test("faults: latency times out, a dropped command has an unknown outcome, a held lock is retryable", async () => {
    const { driver: d, registry } = driver({ commandTimeoutMs: 400 });
    const [app] = await sb.control.seedApps(1, { prefix: "flt", serveHttp: false });
    // Warm up: the first handshake alone may exceed 400 ms on a loaded machine.
    await vi.waitFor(() => d.observeHost(host), { timeout: 20_000, interval: 100 });
    sb.control.setLatency(1500);
    try {
      const slow = await caught(d.observeApp(host, app!));
      expect(slow).toBeInstanceOf(SshError);
      expect((slow as SshError).reason).toBe("Timeout");
    } finally {
      sb.control.setLatency(null);
    }
    sb.control.dropNext({ match: "ps:stop" });
    expect(await caught(d.apply(host, { kind: "stop", app: app! }))).toBeInstanceOf(OutcomeUnknownError);
    const release = sb.control.holdDeployLock(app!);
    try {
      const locked = await caught(d.apply(host, { kind: "deployImage", app: app!, image: "nginx:1.28" }));
      expect(locked).toBeInstanceOf(DokkuCommandError);
      expect((locked as DokkuCommandError).reason).toBe("DeployLocked");
    } finally {
      release();
    }
    const errors = await registry.getSingleMetricAsString("mindroom_dokku_command_errors_total");
    expect(errors).toContain('reason="DeployLocked"');
    expect(errors).toContain('reason="Timeout"');
    expect(errors).not.toContain(app!);
  });

  test("an unresponsive host times out and is reported down", async () => {
    const { driver: d, registry } = driver({ commandTimeoutMs: 1_500 });
    await vi.waitFor(() => d.observeHost(host), { timeout: 20_000, interval: 100 });
    expect(await hostUp(registry)).toBe(1);
    sb.control.setUnresponsive(true);
    try {
      const err = await caught(d.observeHost(host));
      expect((err as SshError).reason).toBe("Timeout");
      await vi.waitFor(async () => expect(await hostUp(registry)).toBe(0), { timeout: 15_000, interval: 100 });
    } finally {
      sb.control.setUnresponsive(false);
    }
    await vi.waitFor(() => d.observeHost(host), { timeout: 20_000, interval: 200 });
    expect(await hostUp(registry)).toBe(1);
  });

  test("host keys: a changed key is refused, an unknown key is learned once", async () => {
    const other = generateEd25519KeyPair().public;
    const { driver: pinned } = driver();
    const before = sb.control.commandCount;
    const err = await caught(pinned.observeHost({ ...host, hostKey: other }));
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe("HostKeyMismatch");
    expect(err.message).toMatch(/sandbox-.*SHA256:.*SHA256:/);
    expect(sb.control.commandCount).toBe(before);

    const learned: string[] = [];
    const { driver: tofu } = driver({ onHostKeyLearned: (_id, key) => void learned.push(key) });
    await Promise.all([tofu.observeHost({ ...host, hostKey: null }), tofu.observeHost({ ...host, hostKey: null })]);
    expect(learned).toHaveLength(1);
    expect(learned[0]!.split(" ").slice(0, 2)).toEqual(sb.hostKey.split(" ").slice(0, 2));
  });

  test("20 concurrent observes on one connection never open more than 8 channels", async () => {
    const { driver: d } = driver({ connectionsPerHost: 1 });
    const apps = await sb.control.seedApps(4, { prefix: "chan", serveHttp: false });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => d.observeApp(host, apps[i % apps.length]!)));
    expect(results.every((r) => r?.deployed === true)).toBe(true);
    const stats = d.stats(host);
    expect(stats.connectionsOpened).toBe(1);
    expect(stats.peakChannels).toBeLessThanOrEqual(8);
    expect(stats.peakChannels).toBe(8);
  });
});
