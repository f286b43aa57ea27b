/**
 * `Idempotency-Key` on `POST` (Stripe's semantics): the first request with a key runs and its
 * response is remembered for 24 hours per account; a retry with the same key and the same request
 * gets that response again (`Idempotent-Replayed: true`) without running anything; the same key
 * with another request is 409, and so is a retry while the first is still running. A 5xx is not
 * remembered, so a retry after a failure on our side runs anew. Requests refused before their
 * handler (validation, authentication, scope, rate limit) are never remembered.
 */
import { createHash } from "node:crypto";

import type { FastifyInstance, FastifyRequest } from "fastify";

import { claimIdempotencyKey, completeIdempotencyKey, releaseIdempotencyKey } from "../../state/api-limits.ts";
import { ApiError } from "./errors.ts";
import { authenticated } from "./guards.ts";
import type { ApiContext } from "./server.ts";

const KEY_FORMAT = /^[\x21-\x7e]{1,255}$/;

interface Claim {
  readonly accountId: string;
  readonly key: string;
}

export function installIdempotency(app: FastifyInstance, ctx: ApiContext): void {
  const claims = new WeakMap<FastifyRequest, Claim>();
  app.addHook("preHandler", async (request, reply) => {
    const key = request.headers["idempotency-key"];
    if (request.method !== "POST" || key === undefined) return;
    if (typeof key !== "string" || !KEY_FORMAT.test(key)) {
      throw new ApiError(400, "invalid_request_error", "idempotency_key_invalid", "Idempotency-Key must be 1 to 255 printable ASCII characters", { param: "Idempotency-Key" });
    }
    const caller = authenticated(request);
    const claim = await ctx.db("idempotency", () => claimIdempotencyKey(ctx.sql, caller.accountId, key, caller.keyId, fingerprint(request)));
    switch (claim.kind) {
      case "claimed":
        claims.set(request, { accountId: caller.accountId, key });
        return;
      case "replay":
        void reply.header("idempotent-replayed", "true");
        return reply.code(claim.statusCode).send(claim.body);
      case "in_flight":
        throw new ApiError(409, "idempotency_error", "idempotency_key_in_use", "A request with this Idempotency-Key is still being processed: retry later");
      case "mismatch":
        throw new ApiError(409, "idempotency_error", "idempotency_key_reused", "This Idempotency-Key was used with a different request: use a new key for a new request");
    }
  });
  app.addHook("onSend", async (request, reply, payload) => {
    const claim = claims.get(request);
    if (!claim) return payload;
    claims.delete(request);
    const write = reply.statusCode >= 500 || typeof payload !== "string"
      ? () => releaseIdempotencyKey(ctx.sql, claim.accountId, claim.key)
      : () => completeIdempotencyKey(ctx.sql, claim.accountId, claim.key, reply.statusCode, JSON.parse(payload) as unknown);
    await ctx.db("idempotency", write).catch((error: unknown) => ctx.deps.logger.warn({ err: error }, "could not record an idempotent response; a retry with its key will run anew or answer 409 until the key expires"));
    return payload;
  });
}

/** What makes two requests "the same": method, route, parameters and body. */
function fingerprint(request: FastifyRequest): string {
  return createHash("sha256")
    .update(JSON.stringify([request.method, request.routeOptions.url ?? request.url, request.params ?? null, request.body ?? null]))
    .digest("hex");
}
