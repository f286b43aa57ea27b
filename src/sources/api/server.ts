/**
 * The customer API, `/v1`: a Fastify application mounted on the daemon's node:http server (the
 * webhook and the probes stay on the plain route table, src/http.ts). Its contracts:
 * - every request carries `Request-Id` back, and every error is Stripe-shaped (errors.ts);
 * - bodies are JSON only (415 otherwise) and at most 64 KiB (413);
 * - keys, scopes and tiers are checked before anything else (auth.ts), then the key's token
 *   bucket (limits.ts), whose state is in Postgres so the limit holds across replicas;
 * - every database wait is bounded by `requestTimeoutMs`: past it the answer is 503 with
 *   Retry-After, never a hung request;
 * - `POST` honours `Idempotency-Key` (idempotency.ts); writes are audited as `api_key:<id>`.
 */
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";

import swagger from "@fastify/swagger";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type RawReplyDefaultExpression, type RawRequestDefaultExpression, type RawServerDefault } from "fastify";
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, validatorCompiler, type ZodTypeProvider } from "fastify-type-provider-zod";
import type { Sql } from "postgres";
import type { Registry } from "prom-client";

import type { Handler } from "../../http.ts";
import type { Logger } from "../../logger.ts";
import { withDeadline } from "../../state/deadline.ts";
import { type ApiScope, type Caller, LastUsedBatcher } from "./auth.ts";
import { installErrorHandling } from "./error-handling.ts";
import { installGuards } from "./guards.ts";
import { installIdempotency } from "./idempotency.ts";
import { createApiMetrics } from "./metrics.ts";
import { servedDocument } from "./openapi.ts";
import { registerAccountRoutes } from "./routes/account.ts";
import { registerBackupRoutes } from "./routes/backups.ts";
import { registerInstanceRoutes } from "./routes/instances.ts";
import type { Clock } from "./views.ts";

export const MAX_BODY_BYTES = 64 * 1024;
const LAST_USED_FLUSH_MS = 30_000;

export interface ApiDeps {
  readonly sql: Sql;
  readonly logger: Logger;
  readonly registry: Registry;
  /** DB_REQUEST_TIMEOUT: how long any request waits for the database before answering 503. */
  readonly requestTimeoutMs: number;
  readonly gracePeriodMs: number;
  readonly retentionPeriodMs: number;
  readonly manualBackupsPerDay: number;
  /** The decrypted, verified archive of a completed backup (src/runtime/backups.ts). */
  readonly openArchive: (backupId: string, signal: AbortSignal) => Promise<Readable>;
  /** Asks the leading controller for a deep pass of a subscription (NOTIFY; does not wait). */
  readonly requestReconcile: (subscriptionId: string) => Promise<void>;
  /** Take client addresses from X-Forwarded-For (only behind a proxy that sets it). */
  readonly trustProxy?: boolean;
  readonly now?: () => Date;
  /** Test seam: per-address failed authentications per minute. */
  readonly failedAuthPerMinute?: number;
}

/**
 * JSON is the only body type (anything else is 415), and an empty JSON body counts as no body:
 * clients that always send `Content-Type: application/json` can POST an action without `{}`.
 */
function acceptJsonOnly(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (body === "") done(null, undefined);
    else void parseJson(request, body as string, done);
  });
}

/** What every route handler gets. */
export interface ApiContext {
  readonly deps: ApiDeps;
  readonly sql: Sql;
  clock(): Clock;
  /** Runs a database call within the request deadline (DatabaseTimeoutError past it: a 503). */
  db<T>(what: string, call: () => PromiseLike<T>): Promise<T>;
}

export type ApiApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;

declare module "fastify" {
  interface FastifyRequest {
    caller: Caller | null;
  }
  interface FastifyContextConfig {
    /** The scope a route needs; none: any valid key. */
    scope?: ApiScope;
    /** No key needed (the OpenAPI document). */
    anonymous?: boolean;
  }
}

export interface Api {
  /** Handles a request whose path starts with `/v1/`. */
  readonly handler: Handler;
  /** The OpenAPI 3.1 document. */
  document(): unknown;
  close(): Promise<void>;
}

export async function createApi(deps: ApiDeps): Promise<Api> {
  const now = deps.now ?? (() => new Date());
  const ctx: ApiContext = {
    deps,
    sql: deps.sql,
    clock: () => ({ now: now(), gracePeriodMs: deps.gracePeriodMs, retentionPeriodMs: deps.retentionPeriodMs }),
    db: (what, call) => withDeadline(deps.requestTimeoutMs, what, call),
  };
  const lastUsed = new LastUsedBatcher(deps.sql, LAST_USED_FLUSH_MS, (error) => deps.logger.warn({ err: error }, "could not record API keys' last use; will retry"));
  const { app, document } = await buildApp(ctx, lastUsed);
  lastUsed.start();
  return {
    handler: (req, res) => app.routing(req, res),
    document,
    close: async () => {
      await lastUsed.stop();
      await app.close();
    },
  };
}

/** The application, ready, and its OpenAPI document (built once, on first use). */
async function buildApp(ctx: ApiContext, lastUsed: LastUsedBatcher): Promise<{ app: FastifyInstance; document: () => unknown }> {
  const app = Fastify({
    logger: false,
    bodyLimit: MAX_BODY_BYTES,
    trustProxy: ctx.deps.trustProxy ?? false,
    genReqId: () => `req_${randomBytes(12).toString("hex")}`,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  acceptJsonOnly(app);
  app.decorateRequest("caller", null);
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { title: "MindRoom API", version: "1", description: "Programmatic access to your MindRoom instances, backups, usage and support." },
      components: { securitySchemes: { apiKey: { type: "http", scheme: "bearer", description: "An API key, `mr_` followed by 64 hex characters" } } },
      security: [{ apiKey: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: jsonSchemaTransformObject,
  });
  const metrics = createApiMetrics(ctx.deps.registry);
  installErrorHandling(app, ctx.deps.logger, metrics);
  installGuards(app, ctx, lastUsed, metrics);
  installIdempotency(app, ctx);
  const typed = app.withTypeProvider<ZodTypeProvider>();
  registerAccountRoutes(typed, ctx);
  registerInstanceRoutes(typed, ctx);
  registerBackupRoutes(typed, ctx);
  let served: unknown;
  const document = (): unknown => (served ??= servedDocument(app.swagger()));
  app.get("/v1/openapi.json", { config: { anonymous: true }, schema: { hide: true } }, () => document());
  await app.ready();
  return { app, document };
}
