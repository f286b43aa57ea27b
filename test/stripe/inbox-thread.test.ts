/**
 * The inbox worker on its own thread, as `serve` runs it: events stored while it runs are applied,
 * its counters and gauges reach the daemon's registry, a wake is never lost while the thread is
 * busy, and `stop` ends the thread.
 */
import { readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { idleAwareWake, INBOX_THREAD_NICE, startInboxThread } from "../../src/sources/stripe/inbox-thread.ts";
import { StripeSim } from "../../src/sources/stripe/sim.ts";
import { eventually } from "../e2e/harness.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { counterValue, ingest, newMetrics, silentLogger, subscriptionRow } from "./helpers.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

describe("idleAwareWake", () => {
  test("sends only while the thread is idle; a wake that arrived while it was busy is sent when it goes idle", () => {
    let sent = 0;
    const waking = idleAwareWake(() => (sent += 1));
    waking.wake(); // busy (not yet idle): noted
    expect(sent).toBe(0);
    waking.idle(); // something arrived meanwhile: sent at once
    expect(sent).toBe(1);
    waking.idle(); // nothing since: now idle
    waking.wake();
    waking.wake(); // the first one woke it: it is busy again
    expect(sent).toBe(2);
    waking.idle();
    expect(sent).toBe(3);
    waking.idle();
    expect(sent).toBe(3);
  });
});

/** The nice value in a /proc stat file (Linux: its field 19). */
function niceIn(statPath: string): number {
  const stat = readFileSync(statPath, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
}

/** The nice value of each thread of this process. */
function threadNiceValues(): number[] {
  return readdirSync("/proc/self/task").map((tid) => niceIn(`/proc/self/task/${tid}/stat`));
}

/** The nice value of a process. */
const processNice = (pid: number): number => niceIn(`/proc/${pid}/stat`);

describe("startInboxThread", () => {
  // The thread's nice is the daemon's plus INBOX_THREAD_NICE (at most 19): testable where that moves it.
  const base = getPriority();
  test.runIf(process.platform === "linux" && base + INBOX_THREAD_NICE <= 19)("runs below the daemon's priority: one thread more at its nice value while it runs, none after", async () => {
    const lowered = base + INBOX_THREAD_NICE;
    const { metrics } = newMetrics();
    const before = threadNiceValues().filter((nice) => nice === lowered).length;
    const thread = startInboxThread(
      { databaseUrl: db.url, applicationName: "inbox-thread-nice-test", poolMax: 1, statementTimeoutMs: 30_000, stripe: { apiKey: undefined, apiBase: undefined, priceTiers: {} }, debug: false },
      { metrics, logger: silentLogger, onFatal: () => undefined },
    );
    try {
      await eventually("the inbox thread at the lowered priority", async () => threadNiceValues().filter((nice) => nice === lowered).length === before + 1, 10_000);
      expect(getPriority()).toBe(base); // this, the caller's thread, is not lowered
      // On this machine's server, the thread's own sessions run lowered too; another session does not.
      const control = (await db.sql<{ pid: number }[]>`select pg_backend_pid() as pid`)[0]!.pid;
      await eventually(
        "the thread's Postgres sessions at a lower priority than another session",
        async () => {
          const sessions = await db.sql<{ pid: number }[]>`select pid from pg_stat_activity where application_name = 'inbox-thread-nice-test:inbox'`;
          return sessions.length > 0 && sessions.every(({ pid }) => processNice(pid) === processNice(control) + INBOX_THREAD_NICE);
        },
        10_000,
      );
    } finally {
      await thread.stop();
    }
    await eventually("the lowered thread gone", async () => threadNiceValues().filter((nice) => nice === lowered).length === before, 10_000);
  });

  test("applies events stored while it runs, forwards its metrics, and stops", async () => {
    const { registry, metrics } = newMetrics();
    const fatal: string[] = [];
    const thread = startInboxThread(
      { databaseUrl: db.url, applicationName: "inbox-thread-test", poolMax: 2, statementTimeoutMs: 30_000, stripe: { apiKey: undefined, apiBase: undefined, priceTiers: {} }, debug: false },
      { metrics, logger: silentLogger, onFatal: (reason) => fatal.push(reason) },
    );
    try {
      const sim = new StripeSim(() => Math.floor(Date.now() / 1000));
      const sub = sim.createSubscription({ customer: sim.createCustomer({ email: "thread@example.com" }), tier: "professional" });
      await ingest(db.sql, sim.events);
      thread.wake();
      await eventually("the subscription applied by the thread", async () => (await subscriptionRow(db.sql, sub))?.status === "active", 30_000);
      await eventually("its counters on the daemon's registry", async () => (await counterValue(registry, { type: "customer.subscription.created", result: "processed" })) === 1, 10_000);
      const [open] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = 'inbox-thread-test:inbox'`;
      expect(open!.n).toBeGreaterThan(0);
    } finally {
      await thread.stop();
    }
    expect(fatal).toEqual([]);
    const [left] = await db.sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = 'inbox-thread-test:inbox'`;
    expect(left!.n).toBe(0);
  }, 60_000);
});
