/**
 * The database failing under a running `serve` (a real child process on its embedded Postgres):
 * frozen (SIGSTOP of the postmaster and all its children: a database that hangs rather than
 * refuses), killed (SIGKILL of the postmaster: supervised restart), and killed past the restart
 * budget (exit 1).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { scenario } from "../../src/sources/stripe/cli.ts";
import { isRunning } from "../../src/state/embedded.ts";
import { postgresPids, postmasterPid, signalPid } from "../helpers/postgres-processes.ts";
import { eventually } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

let dataDir: string;
let serve: ServeProcess;
let port: number;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-db-faults-"));
  serve = startServe({ DATA_DIR: dataDir });
  port = await serve.port;
  await eventually("/readyz 200", async () => (await get("/readyz")).status === 200, 90_000);
  await eventually("the four seeded instances running", async () => runningInstances(await metrics()) === 4, 120_000);
}, 240_000);

afterAll(async () => {
  const pids = await postgresPids(dataDir).catch(() => []);
  for (const pid of pids) signalPid(pid, "SIGCONT");
  serve.kill("SIGKILL");
  await serve.exited;
  if (process.env.FAULTS_LOG) await writeFile(process.env.FAULTS_LOG, serve.output());
  for (const pid of pids) signalPid(pid, "SIGKILL");
  await rm(dataDir, { recursive: true, force: true });
});

async function get(path: string, timeoutMs = 10_000): Promise<{ status: number; body: string; ms: number }> {
  const started = performance.now();
  try {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: await response.text(), ms: performance.now() - started };
  } catch (error) {
    return { status: 0, body: String(error), ms: performance.now() - started };
  }
}

/** A failed wait says what the daemon logged last, so that a failure in CI explains itself. */
async function explained(wait: Promise<void>): Promise<void> {
  await wait.catch((error: unknown) => {
    const tail = serve.output().trim().split("\n").slice(-25).join("\n");
    throw new Error(`${(error as Error).message}; the daemon's last log lines:\n${tail}`, { cause: error });
  });
}

let lastMetrics = "";
async function metrics(): Promise<string> {
  const answer = await get("/metrics");
  if (answer.status === 200) lastMetrics = answer.body;
  return answer.status === 200 ? answer.body : "";
}

function runningInstances(text = lastMetrics): number {
  let total = 0;
  for (const match of text.matchAll(/^mindroom_instances\{phase="running",tier="[^"]*",health="[^"]*"\} (\d+)/gm)) total += Number(match[1]);
  return total;
}

/** A fresh customer with a starter subscription, every event signed with the daemon's secret. */
async function postSubscription(limit = Infinity, timeoutMs = 20_000): Promise<{ statuses: number[]; retryAfter: (string | null)[]; ms: number[] }> {
  const secret = (await readFile(join(dataDir, "stripe_webhook_secret"), "utf8")).trim();
  const result = { statuses: [] as number[], retryAfter: [] as (string | null)[], ms: [] as number[] };
  for (const event of scenario("customer.subscription.created", "starter", {}).slice(0, limit)) {
    const body = JSON.stringify(event);
    const started = performance.now();
    const response = await fetch(`http://127.0.0.1:${port}/webhooks/stripe`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": Stripe.webhooks.generateTestHeaderString({ payload: body, secret }) },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.text();
    result.statuses.push(response.status);
    result.retryAfter.push(response.headers.get("retry-after"));
    result.ms.push(performance.now() - started);
  }
  return result;
}

/** The postmaster's pid; throws while there is none. */
async function postmaster(): Promise<number> {
  const pid = await postmasterPid(dataDir);
  if (pid === undefined) throw new Error(`no postmaster.pid under ${dataDir}`);
  return pid;
}

function leaderGauge(text: string): string | undefined {
  return /^leader_election_master_status\{name="reconciler"\} (\d)/m.exec(text)?.[1];
}

describe("serve while its database fails", () => {
  test("frozen: webhook 503 with Retry-After within 6 s, /readyz 503 within 2 s, the leader steps down before its lease ends; thawed: the next webhook is processed and the controller acts, without a restart", async () => {
    expect(leaderGauge(await metrics())).toBe("1");
    const pids = await postgresPids(dataDir);
    expect(pids.length).toBeGreaterThan(1);
    const frozenAt = performance.now();
    for (const pid of pids) signalPid(pid, "SIGSTOP");
    try {
      const webhook = await postSubscription(1);
      expect(webhook.statuses[0]).toBe(503);
      expect(webhook.retryAfter[0]).toMatch(/^\d+$/);
      expect(Math.max(...webhook.ms)).toBeLessThan(6_000);
      const ready = await get("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body).toMatch(/database/);
      expect(ready.ms).toBeLessThan(2_000);
      // The leader cannot renew: it stops acting before the 15 s lease (renewed before the freeze)
      // can expire, and /metrics keeps answering meanwhile.
      await eventually("the leader stepped down", async () => leaderGauge(await metrics()) === "0", 20_000);
      expect(performance.now() - frozenAt).toBeLessThan(15_000);
      expect(lastMetrics).toMatch(/^mindroom_db_up 0$/m);
    } finally {
      for (const pid of pids.slice().reverse()) signalPid(pid, "SIGCONT");
    }
    await eventually("/readyz 200 after the thaw", async () => (await get("/readyz")).status === 200, 30_000);
    const after = await postSubscription();
    expect(after.statuses.every((status) => status === 200)).toBe(true);
    await eventually("the leader leads again", async () => leaderGauge(await metrics()) === "1", 60_000);
    await eventually("a fifth instance running", async () => runningInstances(await metrics()) === 5, 120_000);
    expect(serve.child.exitCode).toBeNull();
  }, 300_000);

  test("killed: the supervised Postgres restarts on the same data, /readyz 200 within 30 s, a webhook sent after it is processed", async () => {
    const before = await postmaster();
    signalPid(before, "SIGKILL");
    const killedAt = performance.now();
    await eventually("/readyz 200 after the restart", async () => (await get("/readyz")).status === 200 && (await postmaster()) !== before, 30_000);
    expect(performance.now() - killedAt).toBeLessThan(30_000);
    expect(await isRunning(await postmaster())).toBe(true);
    expect(await metrics()).toMatch(/^mindroom_embedded_postgres_restarts_total 1$/m);
    expect(serve.output()).toMatch(/embedded Postgres restarted/);
    const sent = await postSubscription();
    expect(sent.statuses.every((status) => status === 200)).toBe(true);
    await eventually("a sixth instance running", async () => runningInstances(await metrics()) === 6, 120_000);
  }, 300_000);

  test("past the restart budget (5 in 10 minutes) the daemon exits 1", async () => {
    // One restart is spent already; four more are allowed, the sixth death is one too many.
    for (let death = 2; death <= 6; death++) {
      expect(serve.child.exitCode).toBeNull();
      const pid = await postmaster();
      signalPid(pid, "SIGKILL");
      if (death === 6) break;
      // Fully restarted (counted, and ready) before the next kill: a kill during recovery would
      // be a failed start attempt, not a new death.
      const restarted = new RegExp(`^mindroom_embedded_postgres_restarts_total ${death}$`, "m");
      await explained(eventually(`restart ${death}`, async () => restarted.test(await metrics()) && (await get("/readyz")).status === 200 && pid !== (await postmaster()), 90_000));
    }
    const exit = await serve.exited;
    expect(exit.code).toBe(1);
    expect(serve.output()).toMatch(/embedded Postgres died 6 times within 10 minutes \(budget 5\)/);
  }, 300_000);
});
