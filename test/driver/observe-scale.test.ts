/**
 * The bulk observe of a large host over real SSH (issue 17): the driver against a sandbox Dokku
 * host in its own SSH server. 2,500 apps is about 2.5 MB of `ps:report`, more than one SSH
 * channel window (2 MiB) but less than a window plus the channel's buffer: the size that used to
 * stall until the command timeout. 8,000 apps is the per-host size of a 10,000-instance platform
 * and more. The bound is the command timeout (a stall fails with a Timeout error) and the test
 * timeouts; the assertions are on what was observed.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createDokkuDriver, type DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import type { HostRef, ObservedHost } from "../../src/reconciler/types.ts";

let sandbox: Sandbox;
let driver: DokkuDriver;
let host: HostRef;

beforeAll(async () => {
  sandbox = await startSandbox({ dokkuVersion: "0.38", authorizedKeys: null });
  host = { id: "big", name: "sandbox-big", sshUrl: sandbox.sshUrl, hostKey: sandbox.hostKey };
  driver = createDokkuDriver({ privateKey: generateEd25519KeyPair().private, registry: new Registry(), commandTimeoutMs: 30_000 });
});

afterAll(async () => {
  await driver?.close();
  await sandbox?.close();
});

function expectHost(observed: ObservedHost, running: readonly string[], stopped: readonly string[]): void {
  expect(observed.apps.size).toBe(running.length + stopped.length);
  const notRunning = [...observed.apps.values()].filter((app) => !app.running).map((app) => app.app);
  expect(notRunning.sort()).toEqual([...stopped].sort());
  for (const name of running) expect(observed.apps.get(name)).toMatchObject({ app: name, deployed: true, running: true });
}

describe("bulk observe over real SSH", () => {
  test("2,500 apps (more than one SSH window of output) arrive whole", { timeout: 60_000 }, async () => {
    const running = await sandbox.control.seedApps(2_490, { serveHttp: false, prefix: "run" });
    const stopped = await sandbox.control.seedApps(10, { serveHttp: false, running: false, prefix: "stop" });
    expectHost(await driver.observeHost(host), running, stopped);
  });

  test("8,000 apps on one host, observed by one command and again on the same connection", { timeout: 90_000 }, async () => {
    const before = sandbox.control.apps().filter((name) => name.startsWith("run-"));
    const stopped = sandbox.control.apps().filter((name) => name.startsWith("stop-"));
    const running = [...before, ...(await sandbox.control.seedApps(5_500, { serveHttp: false, prefix: "more" }))];
    sandbox.control.resetCounters();
    expectHost(await driver.observeHost(host), running, stopped);
    expectHost(await driver.observeHost(host), running, stopped);
    expect(sandbox.control.commands.map((record) => record.argv.join(" "))).toEqual(["ps:report", "ps:report"]);
  });
});
