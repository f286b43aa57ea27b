/**
 * Leader election against real Postgres: the lease repository's transitions (src/state/lease.ts)
 * and the LeaderElector (src/reconciler/leader.ts) with several electors on one database, each on
 * its own connection pool as separate replicas would be. Timings are short so the file runs in
 * seconds; assertions are about order and identity (who leads, which epoch), never about speed.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { Sql } from "postgres";
import { Gauge, Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import { LEADER_GAUGE_NAME, LeaderElector, type LeaderElectorOptions, type LeaderTerm } from "../../src/reconciler/leader.ts";
import type { LoggerLike } from "../../src/reconciler/logger.ts";
import { connect } from "../../src/state/db.ts";
import { acquireOrRenew, currentEpoch, leaseStore, RECONCILER_LEASE, release, STALE_EPOCH_SQLSTATE } from "../../src/state/lease.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ max: 12 });
});
afterAll(async () => {
  await db?.drop();
});

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

let leaseCounter = 0;
const freshLease = (): string => `test-lease-${++leaseCounter}`;

/** Short test timings: ttl > deadline > 1.2 × retry, with room for a loaded 2-core machine. */
const FAST = { ttlMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 250 } as const;

const silentLogger = (lines: string[] = []): LoggerLike => {
  const record = (_obj: object, msg?: string): void => void lines.push(msg ?? "");
  const logger: LoggerLike = { debug: record, info: record, warn: record, error: record, child: () => logger };
  return logger;
};

/** Polls until `check` holds; only for state that has no event (rows in the database). */
async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

interface Replica {
  readonly elector: LeaderElector;
  readonly sql: Sql;
  readonly registry: Registry;
  readonly terms: { term: LeaderTerm; startedAt: number }[];
  readonly logs: string[];
  /** Resolves with the n-th term (1-based) this replica starts. */
  term(n: number): Promise<LeaderTerm>;
  stop(): Promise<void>;
  readonly stopped: Promise<void>;
}

type ReplicaOptions = Partial<Omit<LeaderElectorOptions, "store" | "logger" | "registry" | "onStartedLeading">> & {
  readonly name: string;
};

/** One replica: its own pool, registry and elector, started at once and stopped after the test. */
function replica(identity: string, options: ReplicaOptions): Replica {
  const sql = connect(db.url, { max: 2 });
  const registry = new Registry();
  const terms: Replica["terms"] = [];
  const waiters: (() => void)[] = [];
  const logs: string[] = [];
  const elector = new LeaderElector({
    ...FAST,
    ...options,
    identity,
    store: leaseStore(sql),
    logger: silentLogger(logs),
    registry,
    onStartedLeading: (term) => {
      terms.push({ term, startedAt: Date.now() });
      for (const wake of waiters.splice(0)) wake();
    },
  });
  const stopper = new AbortController();
  const stopped = elector.start(stopper.signal);
  const term = async (n: number): Promise<LeaderTerm> => {
    while (terms.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
    return terms[n - 1]!.term;
  };
  let done: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (done ??= (async () => {
      stopper.abort();
      await stopped;
      await sql.end({ timeout: 1 });
    })());
  stops.push(stop);
  return { elector, sql, registry, terms, logs, term, stop, stopped };
}

/** The first of several replicas to start leading. */
async function firstLeader(replicas: Replica[]): Promise<{ leader: Replica; term: LeaderTerm; others: Replica[] }> {
  const [leader, term] = await Promise.race(replicas.map(async (r) => [r, await r.term(1)] as const));
  return { leader, term, others: replicas.filter((r) => r !== leader) };
}

async function leaseRow(name: string): Promise<{ holder: string | null; epoch: number; expiresAt: Date; renewedAt: Date }> {
  const [row] = await db.sql<{ holder: string | null; epoch: string; expires_at: Date; renewed_at: Date }[]>`
    select holder, epoch::text as epoch, expires_at, renewed_at from controller_leases where name = ${name}`;
  if (!row) throw new Error(`no lease ${name}`);
  return { holder: row.holder, epoch: Number(row.epoch), expiresAt: row.expires_at, renewedAt: row.renewed_at };
}

async function gaugeValue(registry: Registry, name: string): Promise<number | undefined> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === LEADER_GAUGE_NAME);
  return metric?.values.find((v) => v.labels.name === name)?.value;
}

describe("lease repository (acquireOrRenew, release, currentEpoch)", () => {
  test("insert, renew, refusal while held, takeover after expiry, release, own expired lease", async () => {
    const name = freshLease();
    const expire = () => db.sql`update controller_leases set expires_at = now() - interval '1 second' where name = ${name}`;

    const inserted = await acquireOrRenew(db.sql, { name, holder: "a", ttlMs: 60_000 });
    expect(inserted, "a missing row is inserted with epoch 1").toMatchObject({ leader: true, epoch: 1, holder: "a" });

    const renewed = await acquireOrRenew(db.sql, { name, holder: "a", ttlMs: 60_000 });
    expect(renewed, "the holder renews within the same epoch").toMatchObject({ leader: true, epoch: 1, holder: "a" });
    expect(renewed.expiresAt.getTime(), "a renewal pushes the expiry").toBeGreaterThan(inserted.expiresAt.getTime());

    const refused = await acquireOrRenew(db.sql, { name, holder: "b", ttlMs: 60_000 });
    expect(refused, "a live lease of another holder is only reported").toEqual({ leader: false, epoch: 1, holder: "a", expiresAt: renewed.expiresAt });
    expect(await leaseRow(name), "the refused attempt changed nothing").toMatchObject({ holder: "a", epoch: 1, expiresAt: renewed.expiresAt });

    await expire();
    expect(await acquireOrRenew(db.sql, { name, holder: "b", ttlMs: 60_000 }), "an expired lease is taken with epoch + 1").toMatchObject({ leader: true, epoch: 2, holder: "b" });

    expect(await release(db.sql, { name, holder: "a" }), "only the holder may release").toBe(false);
    expect(await release(db.sql, { name, holder: "b" }), "the holder releases").toBe(true);
    expect(await release(db.sql, { name, holder: "b" }), "a released lease is not released twice").toBe(false);
    expect(await acquireOrRenew(db.sql, { name, holder: "a", ttlMs: 60_000 }), "a released lease is free at once").toMatchObject({ leader: true, epoch: 3, holder: "a" });

    await expire();
    expect(await acquireOrRenew(db.sql, { name, holder: "a", ttlMs: 60_000 }), "re-taking one's own expired lease is a new term").toMatchObject({ leader: true, epoch: 4, holder: "a" });
    expect(await currentEpoch(db.sql, name)).toBe(4);
  });

  test("the expiry is the database's now() + ttl, exactly", async () => {
    const name = freshLease();
    await acquireOrRenew(db.sql, { name, holder: "a", ttlMs: 1_234 });
    const [row] = await db.sql<{ ms: number }[]>`
      select (extract(epoch from expires_at - renewed_at) * 1000)::float8 as ms from controller_leases where name = ${name}`;
    expect(row?.ms).toBe(1_234);
  });

  test("the seeded reconciler lease starts at epoch 0 and its first holder gets epoch 1", async () => {
    const fresh = await createTestDatabase({ max: 2 });
    try {
      expect(await currentEpoch(fresh.sql, RECONCILER_LEASE)).toBe(0);
      expect(await acquireOrRenew(fresh.sql, { name: RECONCILER_LEASE, holder: "a", ttlMs: 5_000 })).toMatchObject({ leader: true, epoch: 1 });
      expect(await currentEpoch(fresh.sql, "no-such-lease")).toBeNull();
    } finally {
      await fresh.drop();
    }
  });

  test("concurrent first attempts on a missing row: exactly one holder wins", async () => {
    const name = freshLease();
    const holders = Array.from({ length: 10 }, (_, i) => `h${i}`);
    const results = await Promise.all(holders.map((holder) => acquireOrRenew(db.sql, { name, holder, ttlMs: 60_000 })));
    const winners = results.filter((r) => r.leader);
    expect(winners).toHaveLength(1);
    expect(new Set(results.map((r) => r.holder)), "every loser names the winner").toEqual(new Set([winners[0]!.holder]));
    expect(results.every((r) => r.epoch === 1)).toBe(true);
  });

  test("rejects a ttl that is not a positive integer", async () => {
    await expect(acquireOrRenew(db.sql, { name: freshLease(), holder: "a", ttlMs: 0 })).rejects.toThrow(RangeError);
  });
});

describe("LeaderElector", () => {
  test("validates its timings at construction", () => {
    const base = { store: leaseStore(db.sql), logger: silentLogger(), registry: new Registry(), onStartedLeading: () => {} };
    expect(() => new LeaderElector({ ...base, ttlMs: 10_000, renewDeadlineMs: 10_000 })).toThrow(/ttlMs > renewDeadlineMs/);
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 })).toThrow(/1.2/);
    expect(() => new LeaderElector({ ...base, retryPeriodMs: -1 })).toThrow(/positive integer/);
    expect(() => new LeaderElector({ store: base.store, logger: base.logger, onStartedLeading: () => {} })).toThrow(/registry/);
  });

  test("reuses a leader_election_master_status gauge already in the registry", () => {
    const registry = new Registry();
    const gauge = new Gauge({ name: LEADER_GAUGE_NAME, help: "pre-registered", labelNames: ["name"] as const, registers: [registry] });
    new LeaderElector({ store: leaseStore(db.sql), logger: silentLogger(), registry, name: "x", onStartedLeading: () => {} });
    expect(registry.getSingleMetric(LEADER_GAUGE_NAME)).toBe(gauge);
  });

  test("two electors on one database: exactly one leads, never both", async () => {
    const name = freshLease();
    const replicas = [replica("r1", { name }), replica("r2", { name })];
    const { leader, term, others } = await firstLeader(replicas);
    // A term is live from onStartedLeading until its signal aborts: never two at once.
    const liveTerms = (): number => replicas.flatMap((r) => r.terms).filter(({ term: t }) => !t.signal.aborted).length;
    let maxConcurrent = liveTerms();
    // Observe for several lease periods (12 × retry period ≈ a whole ttl) while both campaign.
    for (let i = 0; i < 12; i += 1) {
      await sleep(FAST.retryPeriodMs);
      const leaders = replicas.filter((r) => r.elector.isLeader());
      expect(leaders.map((r) => r.elector.identity), `sample ${i}`).toEqual([leader.elector.identity]);
      maxConcurrent = Math.max(maxConcurrent, liveTerms());
    }
    expect(maxConcurrent).toBe(1);
    expect(others.flatMap((r) => r.terms), "the follower never started a term").toEqual([]);
    expect(leader.terms, "the leader kept one term (renewals are not new terms)").toHaveLength(1);
    expect(leader.elector.epoch()).toBe(term.epoch);
    expect(term.signal.aborted).toBe(false);
    expect(await gaugeValue(leader.registry, name)).toBe(1);
    expect(await gaugeValue(others[0]!.registry, name)).toBe(0);
    expect(await leaseRow(name)).toMatchObject({ holder: leader.elector.identity, epoch: term.epoch });
  });

  test("a crashed leader (no release) is replaced after its lease expires, with epoch + 1", async () => {
    const name = freshLease();
    const replicas = [replica("c1", { name, releaseOnStop: false }), replica("c2", { name, releaseOnStop: false })];
    const { leader, term, others } = await firstLeader(replicas);
    const follower = others[0]!;

    await leader.stop();
    const crashedLease = await leaseRow(name);
    expect(crashedLease.holder, "the crashed leader did not release").toBe(leader.elector.identity);

    const next = await follower.term(1);
    expect(next.epoch).toBe(term.epoch + 1);
    expect(follower.terms[0]!.startedAt, "taken only after the old lease expired").toBeGreaterThanOrEqual(crashedLease.expiresAt.getTime());
    expect(term.signal.aborted).toBe(true);
    expect(await leaseRow(name)).toMatchObject({ holder: follower.elector.identity, epoch: term.epoch + 1 });
  });

  test("a clean stop drains while renewing, then releases: the follower takes over at once", async () => {
    const name = freshLease();
    const slow = { ttlMs: 30_000, renewDeadlineMs: 20_000 };
    let finishDrain!: () => void;
    const drained = new Promise<void>((resolve) => (finishDrain = resolve));
    let drainStarted = false;
    const a = replica("s1", {
      name,
      ...slow,
      onStoppedLeading: () => {
        drainStarted = true;
        return drained;
      },
    });
    stops.push(async () => finishDrain()); // runs first (cleanups run in reverse): never leave a stop hanging
    const aTerm = await a.term(1);
    const b = replica("s2", { name, ...slow });
    await until(() => b.logs.includes("leader election: another replica leads"), "the follower to see the leader");

    const stopping = a.stop();
    expect(aTerm.signal.aborted, "the term signal aborts as soon as stop is requested").toBe(true);
    expect(drainStarted).toBe(true);
    expect(a.elector.isLeader()).toBe(false);
    const stopRequestedAt = await leaseRow(name);
    // While the old term drains, the lease is still renewed and nobody else leads.
    await until(async () => (await leaseRow(name)).renewedAt > stopRequestedAt.renewedAt, "a renewal during the drain");
    expect(await leaseRow(name)).toMatchObject({ holder: a.elector.identity, epoch: aTerm.epoch });
    expect(b.terms).toEqual([]);

    const leaseBeforeRelease = await leaseRow(name);
    finishDrain();
    await stopping;
    const bTerm = await b.term(1);
    expect(bTerm.epoch).toBe(aTerm.epoch + 1);
    expect(b.terms[0]!.startedAt, "released: taken long before the lease would have expired").toBeLessThan(leaseBeforeRelease.expiresAt.getTime());
    expect(a.logs).toContain("leader election: lease released");
    expect(await gaugeValue(a.registry, name)).toBe(0);
  });

  test("a stale leader's journal write is refused after the takeover; the new epoch is accepted", async () => {
    const fresh = await createTestDatabase({ max: 4 });
    const previous = db;
    db = fresh; // replicas and leaseRow use `db`: this test needs the seeded reconciler lease
    try {
      const instanceId = await createInstance(fresh.sql);
      const replicas = [replica("f1", { name: RECONCILER_LEASE, releaseOnStop: false }), replica("f2", { name: RECONCILER_LEASE, releaseOnStop: false })];
      const { leader, term, others } = await firstLeader(replicas);
      const journal = (sql: Sql, epoch: number) => sql`
        insert into instance_operations (instance_id, action, target, params_hash, epoch)
        values (${instanceId}, 'createApp', 'fence-test-backend', 'hash', ${epoch})`;

      await journal(leader.sql, term.epoch); // accepted while it leads
      await leader.stop();
      const next = await others[0]!.term(1);
      expect(next.epoch).toBe(term.epoch + 1);

      await expect(journal(fresh.sql, term.epoch), "the old epoch is fenced").rejects.toMatchObject({ code: STALE_EPOCH_SQLSTATE });
      await journal(others[0]!.sql, next.epoch);
      const rows = await fresh.sql<{ epoch: string }[]>`select epoch::text as epoch from instance_operations order by id`;
      expect(rows.map((r) => Number(r.epoch))).toEqual([term.epoch, next.epoch]);
    } finally {
      for (const stop of stops.splice(0).reverse()) await stop();
      db = previous;
      await fresh.drop();
    }
  });

  test("a leader whose database goes away aborts its term within the renew deadline, before the lease expires", async () => {
    const name = freshLease();
    const timings = { ttlMs: 4_000, renewDeadlineMs: 1_500, retryPeriodMs: 250 };
    const a = replica("d1", { name, ...timings });
    const aTerm = await a.term(1);
    const b = replica("d2", { name, ...timings });
    await until(() => b.logs.includes("leader election: another replica leads"), "the follower to see the leader");

    const lost = new Promise<number>((resolve) => aTerm.signal.addEventListener("abort", () => resolve(Date.now())));
    await a.sql.end({ timeout: 0 }); // every later lease call of this replica fails
    const lostAt = await lost;
    const leaseAtLoss = await leaseRow(name);

    expect(String((aTerm.signal.reason as Error).message)).toMatch(/renew deadline/);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.elector.epoch()).toBeNull();
    expect(leaseAtLoss.holder, "nobody else held the lease yet").toBe(a.elector.identity);
    expect(lostAt, "stopped acting while its lease was still valid").toBeLessThan(leaseAtLoss.expiresAt.getTime());
    expect(await gaugeValue(a.registry, name)).toBe(0);

    const bTerm = await b.term(1);
    expect(bTerm.epoch).toBe(aTerm.epoch + 1);
    await a.stop(); // resolves although its release cannot reach the database
    expect(a.logs).toContain("leader election: release failed; the lease expires by itself");
  });
});

/** An account, a free subscription and an instance: the rows a journal entry refers to. */
async function createInstance(sql: Sql): Promise<string> {
  const [account] = await sql<{ id: string }[]>`insert into accounts (email) values ('fence@example.com') returning id`;
  const [subscription] = await sql<{ id: string }[]>`
    insert into subscriptions (account_id, tier, status) values (${account!.id}, 'free', 'active') returning id`;
  const [instance] = await sql<{ id: string }[]>`
    insert into instances (subscription_id, account_id, subdomain) values (${subscription!.id}, ${account!.id}, 'fence-test') returning id`;
  return instance!.id;
}
