/**
 * The checks every `/v1` request passes before its handler, in this order:
 * 1. the client address has not failed authentication too often (429, per address);
 * 2. a valid key of an account whose tier includes the API (401, 403);
 * 3. the key's token bucket has a token (429 with Retry-After); the RateLimit-* headers of the
 *    bucket that applied are on every response, errors included;
 * 4. the route's scope (403 naming it), after routing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import { takeToken, type TokenAnswer } from "../../state/api-limits.ts";
import { authenticate, bearerKey, type Caller, type LastUsedBatcher, requireScope } from "./auth.ts";
import { ApiError } from "./errors.ts";
import { ANONYMOUS_PER_MINUTE, bucketOf, FAILED_AUTH_PER_MINUTE, TIER_RATE_LIMITS } from "./limits.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { ApiContext } from "./server.ts";

export function installGuards(app: FastifyInstance, ctx: ApiContext, lastUsed: LastUsedBatcher, metrics: ApiMetrics): void {
  const failedPerMinute = ctx.deps.failedAuthPerMinute ?? FAILED_AUTH_PER_MINUTE;
  app.addHook("onRequest", async (request, reply) => {
    if (request.routeOptions.config.anonymous) {
      const answer = await ctx.db("rate limit", () => takeToken(ctx.sql, bucketOf(`anon:${request.ip}`, ANONYMOUS_PER_MINUTE)));
      limitOrThrow(reply, answer, ANONYMOUS_PER_MINUTE, () => metrics.rateLimited.inc({ tier: "address" }));
      return;
    }
    const failures = bucketOf(`auth:${request.ip}`, failedPerMinute);
    const before = await ctx.db("rate limit", () => takeToken(ctx.sql, failures, 0));
    if (before.remaining < 1) {
      metrics.rateLimited.inc({ tier: "address" });
      setLimitHeaders(reply, before, failedPerMinute);
      throw tooMany(before.retryAfterSeconds, "Too many failed authentications from this address: wait before retrying");
    }
    const caller = await identify(ctx, request).catch(async (error: unknown) => {
      if (error instanceof ApiError && error.status === 401) {
        const after = await ctx.db("rate limit", () => takeToken(ctx.sql, failures));
        setLimitHeaders(reply, after, failedPerMinute);
      }
      throw error;
    });
    const perMinute = TIER_RATE_LIMITS[caller.tier].perMinute;
    const answer = await ctx.db("rate limit", () => takeToken(ctx.sql, bucketOf(`key:${caller.keyId}`, perMinute)));
    limitOrThrow(reply, answer, perMinute, () => metrics.rateLimited.inc({ tier: caller.tier }));
    lastUsed.note(caller.keyId);
    request.caller = caller;
  });
  app.addHook("preHandler", async (request) => {
    const scope = request.routeOptions.config.scope;
    if (scope) requireScope(callerOf(request), scope);
  });
}

async function identify(ctx: ApiContext, request: FastifyRequest): Promise<Caller> {
  const key = bearerKey(request.headers.authorization);
  return ctx.db("authenticate", () => authenticate(ctx.sql, key, ctx.clock().now));
}

/** The authenticated caller; only routes without `anonymous` are ever handled, so one is set. */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error("no caller on an authenticated route");
  return request.caller;
}

function limitOrThrow(reply: FastifyReply, answer: TokenAnswer, limit: number, onLimited: () => void): void {
  setLimitHeaders(reply, answer, limit);
  if (answer.allowed) return;
  onLimited();
  throw tooMany(answer.retryAfterSeconds, `Rate limit of ${limit} requests per minute exceeded: retry after ${answer.retryAfterSeconds} s`);
}

/** IETF draft-ietf-httpapi-ratelimit-headers: limit, remaining, and seconds until full again. */
function setLimitHeaders(reply: FastifyReply, answer: TokenAnswer, limit: number): void {
  void reply.header("ratelimit-limit", String(limit));
  void reply.header("ratelimit-remaining", String(Math.max(0, answer.remaining)));
  void reply.header("ratelimit-reset", String(answer.resetSeconds));
}

function tooMany(retryAfterSeconds: number, message: string): ApiError {
  return new ApiError(429, "rate_limit_error", "rate_limited", message, { retryAfterSeconds: Math.max(1, retryAfterSeconds) });
}
