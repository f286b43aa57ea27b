/**
 * The shared host view over real SSH (issue 17): one bulk `ps:report` per host per resync wave,
 * however many passes ask; apps this process changed are re-read one by one; a new wave fetches
 * a new view. Commands are counted on the sandbox host.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createDokkuDriver, type DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { Observer } from "../../src/reconciler/observe.ts";
import type { DesiredInstance, HostRef } from "../../src/reconciler/types.ts";

let sandbox: Sandbox;
let driver: DokkuDriver;
let host: HostRef;

beforeAll(async () => {
  sandbox = await startSandbox({ dokkuVersion: "0.38", authorizedKeys: null });
  host = { id: "view", name: "sandbox-view", sshUrl: sandbox.sshUrl, hostKey: sandbox.hostKey };
  driver = createDokkuDriver({ privateKey: generateEd25519KeyPair().private, registry: new Registry(), commandTimeoutMs: 15_000 });
  await sandbox.control.seedApps(60, { serveHttp: false, prefix: "app" });
});

afterAll(async () => {
  await driver?.close();
  await sandbox?.close();
});

/** Only `apps` is read by `Observer.instance`. */
const instanceOf = (apps: string[]): DesiredInstance => ({ apps: apps.map((app) => ({ app })) }) as unknown as DesiredInstance;

function commands(): string[] {
  return sandbox.control.commands.map((record) => record.argv.join(" ")).filter((line) => line !== "version");
}

describe("Observer over real SSH", () => {
  test("a wave shares one view; changed apps are re-read alone; the next wave fetches again", async () => {
    const observer = new Observer({ driver, hostTtlMs: 60 * 60_000, deepIntervalMs: 60 * 60_000, now: () => Date.now() });
    observer.beginWave();
    sandbox.control.resetCounters();
    const instances = Array.from({ length: 20 }, (_, i) => instanceOf([`app-${3 * i}`, `app-${3 * i + 1}`, `app-${3 * i + 2}`]));
    const views = await Promise.all(instances.map((instance) => observer.instance(host, instance)));
    expect(views.every((view) => view.size === 3 && [...view.values()].every((app) => app.running))).toBe(true);
    expect(commands()).toEqual(["ps:report"]);

    // This process stops app-0 and destroys app-1 (by hand here), and says so.
    await sandbox.control.stopAppByHand("app-0");
    await sandbox.control.destroyAppByHand("app-1");
    observer.changed(host.id, ["app-0", "app-1"]);
    sandbox.control.resetCounters();
    const after = await observer.instance(host, instances[0]!);
    expect([...after.keys()]).toEqual(["app-0", "app-2"]);
    expect(after.get("app-0")).toMatchObject({ running: false });
    expect(commands().sort()).toEqual(["ps:report app-0", "ps:report app-1"]);
    // Re-read once: later passes in the wave use what was read.
    await observer.instance(host, instances[0]!);
    await observer.instance(host, instances[1]!);
    expect(commands()).toHaveLength(2);

    observer.beginWave();
    sandbox.control.resetCounters();
    await Promise.all(instances.map((instance) => observer.instance(host, instance)));
    expect(commands()).toEqual(["ps:report"]);
    expect((await observer.host(host)).apps.has("app-1")).toBe(false);
  });
});
