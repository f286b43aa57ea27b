/**
 * The checks every `/v1` request passes before its handler, in this order:
 * 1. the client address has not failed authentication too often (429, per address);
 * 2. a valid key of an account whose tier includes the API (401, 403);
 * 3. the key's token bucket has a token (429 with Retry-After); the RateLimit-* headers of the
 *    bucket that applied are on every response, errors included.
 * Steps 1 to 3 are one database round trip (`api_guard`); a failed authentication costs one
 * more (a token from the address's bucket).
 * 4. the route's scope (403 naming it), after routing.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import { guardApiRequest } from "../../state/api-keys.ts";
import { takeToken, type TokenAnswer } from "../../state/api-limits.ts";
import { bearerKey, type Caller, callerOf, type LastUsedBatcher, requireScope } from "./auth.ts";
import { ApiError } from "./errors.ts";
import { ANONYMOUS_PER_MINUTE, bucketOf, FAILED_AUTH_PER_MINUTE, TIER_RATE_LIMITS } from "./limits.ts";
import type { ApiMetrics } from "./metrics.ts";
import type { ApiContext } from "./server.ts";

export function installGuards(app: FastifyInstance, ctx: ApiContext, lastUsed: LastUsedBatcher, metrics: ApiMetrics): void {
  const failedPerMinute = ctx.deps.failedAuthPerMinute ?? FAILED_AUTH_PER_MINUTE;
  const limits = Object.fromEntries(Object.entries(TIER_RATE_LIMITS).map(([tier, limit]) => [tier, limit.perMinute]));
  app.addHook("onRequest", async (request, reply) => {
    if (request.routeOptions.config.anonymous) {
      const answer = await ctx.db("rate limit", () => takeToken(ctx.sql, bucketOf(`anon:${request.ip}`, ANONYMOUS_PER_MINUTE)));
      limitOrThrow(reply, answer, ANONYMOUS_PER_MINUTE, () => metrics.rateLimited.inc({ tier: "address" }));
      return;
    }
    const failures = bucketOf(`auth:${request.ip}`, failedPerMinute);
    const refuse = async (error: ApiError): Promise<never> => {
      const after = await ctx.db("rate limit", () => takeToken(ctx.sql, failures));
      setLimitHeaders(reply, after, failedPerMinute);
      if (!after.allowed) throw addressLimited(after.retryAfterSeconds, metrics);
      throw error;
    };
    let key: string;
    try {
      key = bearerKey(request.headers.authorization);
    } catch (error) {
      return refuse(error as ApiError);
    }
    const guard = await ctx.db("authenticate", () => guardApiRequest(ctx.sql, { key, addressBucket: failures.name, failedPerMinute, limits }));
    if (guard.address.remaining < 1) {
      setLimitHeaders(reply, { ...guard.address, allowed: false }, failedPerMinute);
      throw addressLimited(guard.address.retryAfterSeconds, metrics);
    }
    let caller: Caller;
    try {
      caller = callerOf(guard.key, ctx.clock().now);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return refuse(error);
      throw error;
    }
    if (!guard.token) throw new Error(`api_guard took no token for an accepted key of tier ${caller.tier}`);
    limitOrThrow(reply, guard.token, TIER_RATE_LIMITS[caller.tier].perMinute, () => metrics.rateLimited.inc({ tier: caller.tier }));
    lastUsed.note(caller.keyId);
    request.caller = caller;
  });
  app.addHook("preHandler", async (request) => {
    const scope = request.routeOptions.config.scope;
    if (scope) requireScope(authenticated(request), scope);
  });
}

function addressLimited(retryAfterSeconds: number, metrics: ApiMetrics): ApiError {
  metrics.rateLimited.inc({ tier: "address" });
  return tooMany(retryAfterSeconds, "Too many failed authentications from this address: wait before retrying");
}

/** The authenticated caller; only routes without `anonymous` are ever handled, so one is set. */
export function authenticated(request: FastifyRequest): Caller {
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
