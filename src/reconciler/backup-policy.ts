/**
 * When paid instances get their daily backup (DESIGN section 10). Pure: time is a parameter.
 *
 * Each instance has its own slot each day: BACKUP_TIME plus a jitter derived from its id, spread
 * over BACKUP_SPREAD, so a host's instances do not all start at once and a given instance backs
 * up at the same time every day.
 */
import { createHash } from "node:crypto";

import type { Tier } from "./types.ts";

const DAY_MS = 86_400_000;
/** Daily backups of one day's instances start within this window after BACKUP_TIME. */
export const BACKUP_SPREAD_MS = 2 * 3_600_000;
/** Automatic attempts per slot before the instance waits for the next day (and the overdue alert). */
export const MAX_DAILY_ATTEMPTS = 3;

/** Tiers that get automatic daily backups: the paid ones. */
export function hasDailyBackups(tier: Tier): boolean {
  return tier !== "free";
}

/** Deterministic offset of an instance inside the spread window. */
export function jitterMs(instanceId: string, spreadMs = BACKUP_SPREAD_MS): number {
  const n = createHash("sha256").update(instanceId).digest().readUInt32BE(0);
  return Math.floor((n / 0x1_0000_0000) * spreadMs);
}

/** The instance's latest daily slot at or before `now`. */
export function latestSlot(instanceId: string, now: Date, atMinute: number, spreadMs = BACKUP_SPREAD_MS): Date {
  const midnight = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  const today = midnight + atMinute * 60_000 + jitterMs(instanceId, spreadMs);
  return new Date(today <= now.getTime() ? today : today - DAY_MS);
}

export interface DailyBackupState {
  readonly instanceId: string;
  readonly tier: Tier;
  /** Newest automatic backup that did not fail (requested, in progress, completed or expired). */
  readonly lastAutomaticAt: Date | null;
  /** Failed automatic attempts created since `failedSince` (the caller passes the latest slot). */
  readonly failedSinceSlot: number;
}

/** Whether a new automatic backup should be requested now. */
export function dailyBackupDue(state: DailyBackupState, now: Date, atMinute: number, spreadMs = BACKUP_SPREAD_MS): boolean {
  if (!hasDailyBackups(state.tier)) return false;
  const slot = latestSlot(state.instanceId, now, atMinute, spreadMs);
  if (state.lastAutomaticAt !== null && state.lastAutomaticAt >= slot) return false;
  return state.failedSinceSlot < MAX_DAILY_ATTEMPTS;
}
