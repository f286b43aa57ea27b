/**
 * The leader lease (`controller_leases`), reconcilers.md section 9 "lease row + fencing". Every
 * decision is one atomic statement timed by the database clock (`now()`), never the local clock,
 * so replicas with skewed clocks agree on who holds the lease and until when.
 *
 * Row transitions (per lease name):
 *   missing ──acquire──────────────► held by A, epoch 1
 *   expired (or never held) ─acquire by B─► held by B, epoch + 1   (a new term; fences the old one)
 *   held by A ──renew by A──────────► held by A, same epoch, expires_at = now() + ttl
 *   held by A ──acquire by B────────► unchanged; B learns the holder
 *   held by A ──release by A────────► expired now (holder kept), so B takes it at its next try
 *
 * The migration seeds the `reconciler` row with epoch 0 and no holder: its first holder gets 1.
 * The `instance_operations` trigger (migrations/0003) refuses journal writes whose epoch is not
 * the `reconciler` row's current epoch (SQLSTATE MR001).
 */
import type { Sql } from "postgres";

import type { LeaseState, LeaseStore } from "../reconciler/types.ts";
import type { Db } from "./sql.ts";


/** SQLSTATE raised by the journal fence when a write carries a stale epoch. */
export const STALE_EPOCH_SQLSTATE = "MR001";

/** The lease name the journal fence checks. */
export const RECONCILER_LEASE = "reconciler";

export interface LeaseRequest {
  readonly name: string;
  /** Unique per process (a restarted process must use a new identity). */
  readonly holder: string;
  /** Lease duration; the expiry is `now() + ttlMs` on the database clock. */
  readonly ttlMs: number;
}

interface LeaseRow {
  readonly holder: string | null;
  readonly epoch: string;
  readonly expires_at: Date | null;
  readonly leader: boolean | null;
}

/**
 * One atomic attempt: insert (epoch 1), take when expired (epoch + 1), renew when held by
 * `holder` (same epoch), else report the holder. A live lease of another holder is rewritten
 * unchanged, which locks the row so that the answer reflects the latest committed state.
 */
export async function acquireOrRenew(sql: Db, request: LeaseRequest): Promise<LeaseState> {
  const { name, holder, ttlMs } = request;
  if (!Number.isInteger(ttlMs) || ttlMs <= 0) throw new RangeError(`lease ttlMs must be a positive integer, got ${ttlMs}`);
  const [row] = await sql<LeaseRow[]>`
    insert into controller_leases as l (name, holder, epoch, renewed_at, expires_at)
    values (${name}, ${holder}, 1, now(), now() + ${ttlMs}::int * interval '1 millisecond')
    on conflict (name) do update set
      holder = case when l.expires_at > now() then l.holder else excluded.holder end,
      epoch = case when l.expires_at > now() then l.epoch else l.epoch + 1 end,
      renewed_at = case when l.expires_at > now() and l.holder is distinct from excluded.holder
                        then l.renewed_at else excluded.renewed_at end,
      expires_at = case when l.expires_at > now() and l.holder is distinct from excluded.holder
                        then l.expires_at else excluded.expires_at end
    returning holder, epoch::text as epoch, expires_at, holder = ${holder} as leader`;
  if (!row) throw new Error("lease upsert returned no row");
  return toLeaseState(row);
}

/** Expires the lease now if `holder` holds it. True when it did; false when it was not ours. */
export async function release(sql: Db, lease: { readonly name: string; readonly holder: string }): Promise<boolean> {
  const rows = await sql<{ name: string }[]>`
    update controller_leases
    set expires_at = now()
    where name = ${lease.name} and holder = ${lease.holder} and expires_at > now()
    returning name`;
  return rows.length === 1;
}

/** The lease's current epoch, or null when no such lease row exists. */
export async function currentEpoch(sql: Db, name: string): Promise<number | null> {
  const [row] = await sql<{ epoch: string }[]>`select epoch::text as epoch from controller_leases where name = ${name}`;
  return row ? parseEpoch(row.epoch) : null;
}

/** The LeaseStore the LeaderElector depends on, bound to a connection pool. */
export function leaseStore(sql: Sql): LeaseStore {
  return {
    acquireOrRenew: (request) => acquireOrRenew(sql, request),
    release: (lease) => release(sql, lease),
  };
}

function toLeaseState(row: LeaseRow): LeaseState {
  return {
    leader: row.leader === true,
    epoch: parseEpoch(row.epoch),
    holder: row.holder,
    expiresAt: row.expires_at ?? new Date(0),
  };
}

function parseEpoch(text: string): number {
  const epoch = Number(text);
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new Error(`lease epoch out of range: ${text}`);
  return epoch;
}
