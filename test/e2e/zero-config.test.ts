/**
 * `npm start` with no configuration at all: embedded Postgres in DATA_DIR, a sandbox Dokku host,
 * the demo seed converging; `stripe send` makes a new instance; Ctrl-C leaves no Postgres behind;
 * a second start reuses the same data.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { isRunning } from "../../src/state/embedded.ts";
import { eventually } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

let dataDir: string;
const started: ServeProcess[] = [];

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-zero-config-"));
});

afterAll(async () => {
  for (const serve of started) serve.kill("SIGKILL");
  await Promise.all(started.map((serve) => serve.exited));
  await rm(dataDir, { recursive: true, force: true });
});

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  return { status: response.status, body: await response.text() };
}

function runningInstances(metrics: string, health = "[^\"]*"): number {
  let total = 0;
  const series = new RegExp(`^mindroom_instances\\{phase="running",tier="[^"]*",health="${health}"\\} (\\d+)`, "gm");
  for (const match of metrics.matchAll(series)) total += Number(match[1]);
  return total;
}

async function postmasterPid(): Promise<number> {
  return Number((await readFile(join(dataDir, "pg", "postmaster.pid"), "utf8")).split("\n")[0]);
}


/** A one-shot command on the same DATA_DIR (a guest of the running daemon's Postgres). */
function guest(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["src/bin.mjs", ...args], { env: { PATH: process.env.PATH, DATA_DIR: dataDir }, encoding: "utf8", timeout: 60_000 });
}

function serve(): ServeProcess {
  // No DATABASE_URL, no DOKKU_HOSTS, no secrets: only where to keep data and a free port.
  const process_ = startServe({ DATA_DIR: dataDir });
  started.push(process_);
  return process_;
}

describe("npm start on its embedded defaults", () => {
  test("ready, converges the seed, takes a Stripe trigger, stops cleanly, and restarts on the same data", async () => {
    const first = serve();
    const port = await first.port;
    await eventually("/readyz 200", async () => (await get(port, "/readyz")).status === 200, 60_000);
    const metrics = (await get(port, "/metrics")).body;
    expect(metrics).toMatch(/^controller_runtime_reconcile_total\{controller="instance",result="success"\}/m);
    expect(metrics).toMatch(/^mindroom_instances\{/m);
    expect(first.output()).toMatch(/SANDBOX MODE/);
    await eventually("the four seeded instances running", async () => runningInstances((await get(port, "/metrics")).body) === 4, 90_000);
    // New instances are probed at once (real HTTP through the sandbox's ingress).
    await eventually("the four seeded instances healthy", async () => runningInstances((await get(port, "/metrics")).body, "healthy") === 4, 90_000);
    // Every convergence is measured (each seeded instance converged, most in one pass), and the
    // pool gauge has data at the first scrape.
    const filled = (await get(port, "/metrics")).body;
    expect(Number(/^mindroom_converge_seconds_count (\d+)/m.exec(filled)?.[1])).toBeGreaterThanOrEqual(4);
    expect(filled).toMatch(/^mindroom_db_connections\{state="(idle|active)"\} [1-9]\d*$/m);
    expect(filled).toMatch(/^mindroom_db_up 1$/m);

    // A second `serve` on the same DATA_DIR (on the same port or another) refuses in one line with
    // exit 2 and changes nothing: the sandbox row still points at the first daemon's sandbox.
    const hostsBefore = guest("hosts", "list");
    expect(hostsBefore.status, hostsBefore.stderr).toBe(0);
    expect(hostsBefore.stderr).toBe(""); // a guest command logs nothing at the default level
    for (const secondPort of [String(port), "0"]) {
      const intruder = startServe({ DATA_DIR: dataDir, PORT: secondPort });
      started.push(intruder);
      expect((await intruder.exited).code).toBe(2);
      expect(intruder.output()).toMatch(/^mindroom-reconciler serve: another serve \(pid \d+\) already owns DATA_DIR \S+; stop it first, or give this one its own DATA_DIR\n$/);
    }
    expect(guest("hosts", "list").stdout).toBe(hostsBefore.stdout);
    expect((await get(port, "/metrics")).body).toMatch(/^mindroom_dokku_host_up\{host="sandbox"\} 1$/m);

    const send = spawnSync(process.execPath, ["src/bin.mjs", "stripe", "send", "customer.subscription.created", "--tier", "starter"], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: String(port) },
      encoding: "utf8",
    });
    expect(send.status, send.stderr).toBe(0);
    expect(send.stdout).toMatch(/customer\.subscription\.created -> 200/);
    await eventually("a fifth instance running", async () => runningInstances((await get(port, "/metrics")).body) === 5, 90_000);
    // The inbox worker runs on a thread of its own; its counters reach the daemon's /metrics.
    await eventually("the inbox thread's counters on /metrics", async () =>
      /^mindroom_stripe_events_total\{type="customer\.subscription\.created",result="processed"\} 1$/m.test((await get(port, "/metrics")).body), 10_000);

    const pid = await postmasterPid();
    expect(await isRunning(pid)).toBe(true);
    first.kill("SIGINT");
    const exit = await first.exited;
    expect(exit.code).toBe(0);
    await eventually("embedded Postgres stopped", async () => !(await isRunning(pid)), 20_000);

    const second = serve();
    const port2 = await second.port;
    await eventually("/readyz 200 again", async () => (await get(port2, "/readyz")).status === 200, 60_000);
    expect(second.output()).toMatch(/started embedded Postgres/);
    expect(second.output()).not.toMatch(/created and started embedded Postgres/);
    await eventually("all five instances running after restart", async () => runningInstances((await get(port2, "/metrics")).body) === 5, 90_000);
    second.kill("SIGINT");
    expect((await second.exited).code).toBe(0);
  }, 300_000);
});
