/**
 * The API's shared state in Postgres (migration 0014): the token bucket's arithmetic, the
 * idempotency claim's outcomes, and the hourly sweep.
 */
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { createApiKey, guardApiRequest } from "../../src/state/api-keys.ts";
import { claimIdempotencyKey, completeIdempotencyKey, releaseIdempotencyKey, sweepApiState, takeToken } from "../../src/state/api-limits.ts";
import { seed } from "../../src/state/db.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

const ACCOUNT = "a0000000-0000-4000-8000-000000000003";
const KEY = "d0000000-0000-4000-8000-000000000002";
const FP = "a".repeat(64);

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
});

afterAll(async () => {
  await db?.drop();
});

describe("token buckets", () => {
  test("a new bucket starts full, a refused request takes nothing, tokens come back at the refill rate", async () => {
    const bucket = { name: "key:test-a", capacity: 3, refillPerSecond: 1 };
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await takeToken(db.sql, bucket));
    expect(answers.map((a) => a.allowed)).toEqual([true, true, true, false]);
    expect(answers[2]!.remaining).toBe(0);
    expect(answers[3]!.retryAfterSeconds).toBe(1);
    expect(answers[3]!.resetSeconds).toBeGreaterThanOrEqual(2);
    await db.sql`update public.api_rate_buckets set updated_at = updated_at - interval '2 seconds' where bucket = ${bucket.name}`;
    const later = await takeToken(db.sql, bucket);
    expect(later.allowed).toBe(true);
    expect(later.remaining).toBe(1);
    await db.sql`update public.api_rate_buckets set updated_at = updated_at - interval '1 hour' where bucket = ${bucket.name}`;
    expect((await takeToken(db.sql, bucket, 0)).remaining).toBe(3); // never above capacity
    const [row] = await db.sql<{ idle: boolean }[]>`select updated_at < now() - interval '59 minutes' as idle from public.api_rate_buckets where bucket = ${bucket.name}`;
    expect(row!.idle).toBe(true); // looking wrote nothing
    await db.sql`delete from public.api_rate_buckets where bucket = ${bucket.name}`;
  });

  test("concurrent takes never hand out more than the capacity", async () => {
    const bucket = { name: "key:test-b", capacity: 20, refillPerSecond: 0.001 };
    const answers = await Promise.all(Array.from({ length: 40 }, () => takeToken(db.sql, bucket)));
    expect(answers.filter((a) => a.allowed)).toHaveLength(20);
  });
});

describe("api_guard", () => {
  const limits = { starter: 60, professional: 600, enterprise: 6000 };

  test("a key the API accepts takes one token from its tier's bucket; a revoked one and a free plan's take none", async () => {
    const pro = await createApiKey(db.sql, ACCOUNT, "guard", ["read"], null);
    const answer = await guardApiRequest(db.sql, { key: pro.key, addressBucket: "auth:guard-a", failedPerMinute: 10, limits });
    expect(answer.key).toMatchObject({ id: pro.id, accountId: ACCOUNT, tier: "professional", apiAccess: true });
    expect(answer.token).toEqual({ allowed: true, remaining: 599, resetSeconds: 1, retryAfterSeconds: 0 });
    await db.sql`update public.api_keys set is_active = false where id = ${pro.id}`;
    const revoked = await guardApiRequest(db.sql, { key: pro.key, addressBucket: "auth:guard-a", failedPerMinute: 10, limits });
    expect(revoked.key?.revokedAt).toBeInstanceOf(Date);
    expect(revoked.token).toBeUndefined();
    const free = await createApiKey(db.sql, "a0000000-0000-4000-8000-000000000001", "guard", ["read"], null);
    const freeAnswer = await guardApiRequest(db.sql, { key: free.key, addressBucket: "auth:guard-a", failedPerMinute: 10, limits });
    expect(freeAnswer.key).toMatchObject({ tier: "free", apiAccess: false });
    expect(freeAnswer.token).toBeUndefined();
    const [bucket] = await db.sql`select count(*)::int as n from public.api_rate_buckets where bucket = ${`key:${free.id}`}`;
    expect(bucket!.n).toBe(0);
  });

  test("an address over its failed-authentication limit reads no key", async () => {
    const pro = await createApiKey(db.sql, ACCOUNT, "guard-b", ["read"], null);
    for (let i = 0; i < 3; i++) await takeToken(db.sql, { name: "auth:guard-b", capacity: 3, refillPerSecond: 3 / 60 });
    const answer = await guardApiRequest(db.sql, { key: pro.key, addressBucket: "auth:guard-b", failedPerMinute: 3, limits });
    expect(answer.address.remaining).toBe(0);
    expect(answer.address.retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(answer.key).toBeUndefined();
    expect(answer.token).toBeUndefined();
  });
});

describe("idempotency keys", () => {
  test("claimed, in flight, replayed, mismatched; a released claim can be claimed again", async () => {
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k1", KEY, FP)).toEqual({ kind: "claimed" });
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k1", KEY, FP)).toEqual({ kind: "in_flight" });
    await completeIdempotencyKey(db.sql, ACCOUNT, "k1", 202, { ok: true });
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k1", KEY, FP)).toEqual({ kind: "replay", statusCode: 202, body: { ok: true } });
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k1", KEY, "b".repeat(64))).toEqual({ kind: "mismatch" });
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k2", KEY, FP)).toEqual({ kind: "claimed" });
    await releaseIdempotencyKey(db.sql, ACCOUNT, "k2");
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k2", KEY, FP)).toEqual({ kind: "claimed" });
  });

  test("an abandoned claim (no response a minute later) and a key past 24 hours start afresh", async () => {
    await claimIdempotencyKey(db.sql, ACCOUNT, "k3", KEY, FP);
    await db.sql`update public.api_idempotency_keys set created_at = now() - interval '2 minutes' where idempotency_key = 'k3'`;
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k3", KEY, "c".repeat(64))).toEqual({ kind: "claimed" });
    await completeIdempotencyKey(db.sql, ACCOUNT, "k3", 201, {});
    await db.sql`update public.api_idempotency_keys set created_at = now() - interval '25 hours' where idempotency_key = 'k3'`;
    expect(await claimIdempotencyKey(db.sql, ACCOUNT, "k3", KEY, FP)).toEqual({ kind: "claimed" });
  });
});

describe("the sweep", () => {
  test("deletes idempotency keys past 24 hours and buckets idle for an hour, and nothing else", async () => {
    await claimIdempotencyKey(db.sql, ACCOUNT, "old", KEY, FP);
    await claimIdempotencyKey(db.sql, ACCOUNT, "fresh", KEY, FP);
    await db.sql`update public.api_idempotency_keys set created_at = now() - interval '25 hours' where idempotency_key = 'old'`;
    await takeToken(db.sql, { name: "addr:idle", capacity: 5, refillPerSecond: 1 });
    await takeToken(db.sql, { name: "addr:busy", capacity: 5, refillPerSecond: 1 });
    await db.sql`update public.api_rate_buckets set updated_at = now() - interval '2 hours' where bucket = 'addr:idle'`;
    const swept = await sweepApiState(db.sql);
    expect(swept).toEqual({ keys: 1, buckets: 1 });
    const keys = await db.sql`select idempotency_key from public.api_idempotency_keys where idempotency_key in ('old', 'fresh')`;
    expect(keys.map((k) => k.idempotency_key)).toEqual(["fresh"]);
    const buckets = await db.sql`select bucket from public.api_rate_buckets where bucket like 'addr:%'`;
    expect(buckets.map((b) => b.bucket)).toEqual(["addr:busy"]);
  });
});
