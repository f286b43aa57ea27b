/**
 * Settled passes: a resync pass over an instance nothing has changed costs no SQL of its own.
 *
 * A full pass that converged leaves a memo of what it saw (generation, host,
 * status, health, the billing fields that word the desired state, when the desired state changes
 * by itself, the apps and phase). A resync wave reads every settled instance in one statement
 * (`InstanceStore.settled`, at most `maxAgeMs` old) and the wave's shallow host views are shared
 * anyway, so a low-priority pass over a memoised key is answered in memory when:
 *   - the wave's read shows the instance settled, with the memo's generation, host, status,
 *     health and billing fields (anything a pass writes or reads that changed shows here);
 *   - this process still leads with the memo's epoch (another leader may have acted meanwhile);
 *   - the desired state's own change time (grace end) has not come, and no deep observe is due;
 *   - the host's shallow view shows the apps in the memo's phase.
 * Anything else, or any error on the way, answers "not settled" and the caller runs a full pass.
 * Changes after the wave's read come with a notification, which queues the key at high priority,
 * and high-priority keys always get a full pass; a missed notification is followed by a new wave
 * (the SQL source resyncs on every reconnect), whose read sees the change.
 */
import { appsMatch, type Observer } from "./observe.ts";
import type { HealthStatus, HostRef, InstanceStatus, InstanceStore, SettledRow } from "./types.ts";

/** What a full pass that converged saw. */
export interface SettledMemo {
  readonly instanceId: string;
  readonly generation: number;
  readonly host: HostRef;
  readonly status: InstanceStatus;
  readonly healthStatus: HealthStatus;
  readonly cancelAtPeriodEnd: boolean;
  readonly currentPeriodEnd: Date | null;
  /** When the desired state changes by itself (a grace period ends); null: never. */
  readonly changesAt: Date | null;
  readonly phase: "running" | "stopped";
  readonly apps: readonly string[];
  readonly epoch: number;
}

export interface SettledDeps {
  readonly store: Pick<InstanceStore, "settled">;
  readonly observer: Pick<Observer, "instanceApps" | "deepDue">;
  readonly epoch: () => number | undefined;
  readonly now: () => Date;
  /** The oldest a wave's bulk read may be before it is read again (a safety bound). Default 60 s. */
  readonly maxAgeMs?: number;
}

const DEFAULT_MAX_AGE_MS = 60_000;

export class SettledPasses {
  private readonly memos = new Map<string, SettledMemo>();
  /** One HostRef per host, shared by every memo on it. */
  private readonly hosts = new Map<string, HostRef>();
  private read: { at: number; rows: Promise<Map<string, SettledRow> | undefined> } | undefined;

  constructor(private readonly deps: SettledDeps) {}

  /** A resync wave starts: the next check reads the database again. */
  beginWave(): void {
    this.read = undefined;
  }

  /** A full pass of `key` starts: whatever it ends with, the old memo no longer speaks for it. */
  forget(key: string): void {
    this.memos.delete(key);
  }

  /** A full pass of `key` converged (apps it changed are re-read through the observer when checked). */
  remember(key: string, memo: SettledMemo): void {
    // The newest ref of each host serves every memo on it (and one object instead of thousands).
    const shared = this.hosts.get(memo.host.id);
    const host = shared && sameHost(shared, memo.host) ? shared : memo.host;
    this.hosts.set(host.id, host);
    this.memos.set(key, host === memo.host ? memo : { ...memo, host });
  }

  /** Memos held (for leak checks and the benchmark). */
  size(): number {
    return this.memos.size;
  }

  /**
   * When `key` is settled (see the file comment): when to look again (`requeueAfterMs`, only when
   * the desired state changes by itself). Undefined: run a full pass. Never throws.
   */
  async check(key: string, signal?: AbortSignal): Promise<{ requeueAfterMs?: number } | undefined> {
    const memo = this.memos.get(key);
    if (!memo) return undefined;
    try {
      const now = this.deps.now().getTime();
      if (memo.epoch !== this.deps.epoch()) return undefined;
      if (memo.changesAt && now >= memo.changesAt.getTime()) return undefined;
      if (this.deps.observer.deepDue(memo.instanceId)) return undefined;
      const row = (await this.rows(now))?.get(key);
      if (!row || !sameRow(memo, row)) return undefined;
      const shallow = await this.deps.observer.instanceApps(this.hosts.get(memo.host.id) ?? memo.host, memo.apps, signal);
      if (!appsMatch(memo.phase, memo.apps, shallow)) return undefined;
      return memo.changesAt ? { requeueAfterMs: Math.max(1, memo.changesAt.getTime() - now) } : {};
    } catch {
      return undefined;
    }
  }

  private rows(now: number): Promise<Map<string, SettledRow> | undefined> {
    const maxAge = this.deps.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
    if (!this.read || now - this.read.at >= maxAge) {
      // A failed read settles nothing this wave: every key gets its full pass.
      this.read = { at: now, rows: this.deps.store.settled().catch(() => undefined) };
    }
    return this.read.rows;
  }
}

function sameRow(memo: SettledMemo, row: SettledRow): boolean {
  return (
    row.instanceId === memo.instanceId &&
    row.generation === memo.generation &&
    row.hostId === memo.host.id &&
    row.status === memo.status &&
    row.healthStatus === memo.healthStatus &&
    row.cancelAtPeriodEnd === memo.cancelAtPeriodEnd &&
    (row.currentPeriodEnd?.getTime() ?? null) === (memo.currentPeriodEnd?.getTime() ?? null)
  );
}

function sameHost(a: HostRef, b: HostRef): boolean {
  return a.name === b.name && a.sshUrl === b.sshUrl && a.hostKey === b.hostKey && a.maxCommandBytes === b.maxCommandBytes;
}
