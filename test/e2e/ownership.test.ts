/**
 * Who owns the embedded Postgres (issue 19): only a `serve` holding the DATA_DIR lock starts,
 * adopts or stops it. Through real processes: an owner killed with SIGKILL (reaped, and left a
 * zombie by a parent that never reaps), guest commands run in between, a database outage under a
 * live owner, and a guest with no owner at all. No guest ever starts or stops the server.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { dataDirOwner } from "../../src/state/data-dir-lock.ts";
import { isRunning } from "../../src/state/embedded.ts";
import { eventually } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

let dataDir: string;
const serves: ServeProcess[] = [];
const others: ChildProcess[] = [];
const postmasters = new Set<number>();

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-ownership-"));
});

afterAll(async () => {
  for (const serve of serves) serve.kill("SIGKILL");
  for (const child of others) child.kill("SIGKILL");
  await Promise.all(serves.map((serve) => serve.exited));
  // Servers this test's serves started and left behind on purpose.
  for (const pid of postmasters) if (await isRunning(pid)) process.kill(pid, "SIGINT");
  for (const pid of postmasters) await eventually(`postmaster ${pid} stopped`, async () => !(await isRunning(pid)), 30_000).catch(() => {});
  await rm(dataDir, { recursive: true, force: true });
}, 60_000);

function serve(): ServeProcess {
  const started = startServe({ DATA_DIR: dataDir });
  serves.push(started);
  return started;
}

/** A one-shot command on the same DATA_DIR: a guest. */
function guest(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, ["src/bin.mjs", ...args], { env: { PATH: process.env.PATH, DATA_DIR: dataDir }, encoding: "utf8", timeout: 60_000 });
}

async function ready(port: number): Promise<void> {
  await eventually("/readyz 200", async () => (await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(5000) })).status === 200, 90_000);
}

async function postmaster(): Promise<{ pid: number; text: string } | undefined> {
  try {
    const text = await readFile(join(dataDir, "pg", "postmaster.pid"), "utf8");
    const pid = Number(text.split("\n")[0]);
    postmasters.add(pid);
    return { pid, text };
  } catch {
    return undefined;
  }
}

async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

async function processState(pid: number): Promise<string> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

/**
 * A serve whose parent never reaps it (a shell that execs `sleep`): killed with SIGKILL, it stays
 * a zombie, which kill(pid, 0) still reports alive.
 */
async function serveUnderNonReapingParent(): Promise<{ pid: number; port: number }> {
  const script = `"${process.execPath}" src/bin.mjs serve & echo "serve-pid $!"; exec sleep 600`;
  const parent = spawn("sh", ["-c", script], { env: { PATH: process.env.PATH ?? "", PORT: "0", LOG_LEVEL: "info", HEALTH_INTERVAL: "1h", DATA_DIR: dataDir }, stdio: ["ignore", "pipe", "pipe"] });
  others.push(parent);
  return new Promise((resolve, reject) => {
    let pid = 0;
    let log = "";
    for (const stream of [parent.stdout, parent.stderr]) {
      createInterface({ input: stream! }).on("line", (line) => {
        log += `${line}\n`;
        const child = /^serve-pid (\d+)$/.exec(line);
        if (child) pid = Number(child[1]);
        const listening = /listening on http:\/\/[0-9.:[\]]+:(\d+) /.exec(line);
        if (listening && pid > 0) resolve({ pid, port: Number(listening[1]) });
      });
    }
    setTimeout(() => reject(new Error(`the serve under a non-reaping parent did not listen within 90 s:\n${log}`)), 90_000).unref();
  });
}

describe("embedded Postgres ownership", () => {
  test("guests never start, adopt or stop it; only a serve holding the lock does, zombies and outages included", async () => {
    // 1. Owner A is killed with SIGKILL (and reaped); its Postgres is left running, unowned.
    const a = serve();
    await ready(await a.port);
    const left = (await postmaster())!;
    a.kill("SIGKILL");
    await a.exited;
    expect(await dataDirOwner(dataDir)).toBeUndefined();
    expect(await isRunning(left.pid)).toBe(true);

    // A guest reads through it and leaves it running: it is not the guest's to stop.
    const unowned = guest("status");
    expect(unowned.status, unowned.stderr).toBe(0);
    expect(unowned.stdout).toMatch(/^demo-free /m);
    expect(await isRunning(left.pid)).toBe(true);

    // 2. The next serve adopts it (same server, no second one), under a parent that never reaps.
    const b = await serveUnderNonReapingParent();
    await ready(b.port);
    expect((await postmaster())!.pid).toBe(left.pid);
    expect(await dataDirOwner(dataDir)).toEqual({ pid: b.pid });
    process.kill(b.pid, "SIGKILL");
    await eventually("serve B is a zombie", async () => (await processState(b.pid)) === "Z");
    expect(() => process.kill(b.pid, 0)).not.toThrow(); // what a pid liveness check would believe
    // What the lock knows: released once the last thread of the process is gone (the leader
    // shows as a zombie slightly before its other threads finish exiting).
    await eventually("the lock released", async () => (await dataDirOwner(dataDir)) === undefined, 10_000);
    expect(await processState(b.pid)).toBe("Z");
    const afterZombie = guest("status");
    expect(afterZombie.status, afterZombie.stderr).toBe(0);
    expect(await isRunning(left.pid)).toBe(true);

    // 3. The zombie does not block the next serve: C takes the lock and adopts the same server.
    const c = serve();
    await ready(await c.port);
    expect(c.output()).toMatch(/adopted embedded Postgres left running/);
    expect((await postmaster())!.pid).toBe(left.pid);
    const whileOwned = guest("plan");
    expect([0, 1], whileOwned.stdout + whileOwned.stderr).toContain(whileOwned.status);
    expect(whileOwned.stderr).not.toMatch(/Postgres/);
    expect(await isRunning(left.pid)).toBe(true);

    // 4. An outage under the live owner C: the server dies and C, its owner, restarts it (issue 9's
    //    supervision). A guest run meanwhile starts nothing: it answers from the restarted server,
    //    or fails in one line while the server recovers.
    process.kill(left.pid, "SIGKILL");
    await eventually("postmaster gone", async () => !(await isRunning(left.pid)));
    const during = guest("status");
    expect([0, 1], during.stderr).toContain(during.status);
    if (during.status === 1) expect(during.stderr.trim().split("\n"), during.stderr).toHaveLength(1);
    await eventually("the owner restarted its server", async () => {
      const current = await postmaster();
      return current !== undefined && current.pid !== left.pid && (await isRunning(current.pid));
    }, 30_000);
    const restarted = (await postmaster())!;
    expect(await parentOf(restarted.pid), "started by the owner, not by the guest").toBe(c.child.pid);
    expect(await dataDirOwner(dataDir)).toEqual({ pid: c.child.pid });

    // 5. No owner, no server: a guest refuses and still starts nothing.
    c.kill("SIGTERM");
    await c.exited;
    await eventually("the owner stopped its server on SIGTERM", async () => !(await isRunning(restarted.pid)));
    const none = guest("status");
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/^mindroom-reconciler status: no database: no serve runs on DATA_DIR \S+ and no embedded Postgres is running there; start `mindroom-reconciler serve` \(it owns the embedded database\), or set DATABASE_URL\n$/);
    const after = await postmaster();
    expect(after === undefined || !(await isRunning(after.pid)), "the guest started no server").toBe(true);

    // 6. The next serve starts a fresh server over the stale lock file, and stops it on SIGTERM.
    const d = serve();
    await ready(await d.port);
    const fresh = (await postmaster())!;
    expect(fresh.pid).not.toBe(left.pid);
    expect(d.output()).toMatch(/\bstarted embedded Postgres/);
    d.kill("SIGTERM");
    expect((await d.exited).code).toBe(0);
    await eventually("D's Postgres stopped", async () => !(await isRunning(fresh.pid)), 30_000);
  }, 400_000);
});
