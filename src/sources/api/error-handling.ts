/**
 * Every failure of a `/v1` request becomes a Stripe-shaped error with the right status, and every
 * response is counted. Unexpected errors are logged without their message when it may quote data
 * (a Postgres error is logged by SQLSTATE only) and answered as a bare 500.
 */
import type { FastifyError, FastifyInstance } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";

import { loggableError } from "../../errors.ts";
import type { Logger } from "../../logger.ts";
import { isDatabaseTimeout } from "../../state/deadline.ts";
import { ApiError, errorBody } from "./errors.ts";
import type { ApiMetrics } from "./metrics.ts";

/** Seconds a client is asked to wait after a 503 (the database did not answer in time). */
const RETRY_AFTER_UNAVAILABLE_SECONDS = 5;

export function installErrorHandling(app: FastifyInstance, logger: Logger, metrics: ApiMetrics): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const apiError = toApiError(error, request.method, logger);
    if (apiError.extra.retryAfterSeconds !== undefined) void reply.header("retry-after", String(apiError.extra.retryAfterSeconds));
    return reply.code(apiError.status).send(errorBody(apiError, request.id));
  });
  app.setNotFoundHandler((request, reply) => {
    const path = (request.url.split("?")[0] ?? "").slice(0, 200);
    const error = new ApiError(404, "invalid_request_error", "resource_missing", `Unrecognized request URL (${request.method}: ${path}); see /v1/openapi.json`);
    return reply.code(404).send(errorBody(error, request.id));
  });
  app.addHook("onSend", async (request, reply, payload) => {
    void reply.header("request-id", request.id);
    return payload;
  });
  app.addHook("onResponse", async (request, reply) => {
    const route = request.routeOptions.url ?? "unmatched";
    const method = request.method;
    metrics.requests.inc({ route, method, code: String(reply.statusCode) });
    metrics.seconds.observe({ route, method }, reply.elapsedTime / 1000);
  });
}

function toApiError(error: FastifyError, method: string, logger: Logger): ApiError {
  if (error instanceof ApiError) return error;
  if (hasZodFastifySchemaValidationErrors(error)) {
    const issue = error.validation[0];
    const param = issue?.instancePath.replace(/^\//, "").replaceAll("/", ".") || String(issue?.params?.["missingProperty"] ?? "") || undefined;
    const where = error.validationContext ?? "request";
    const message = `Invalid ${where}${param ? ` parameter ${param}` : ""}: ${issue?.message ?? "does not match the schema"}`;
    return new ApiError(400, "invalid_request_error", "parameter_invalid", message, param ? { param } : {});
  }
  if (isDatabaseTimeout(error)) {
    return new ApiError(503, "api_error", "database_timeout", "The database did not answer in time; retry after a few seconds", { retryAfterSeconds: RETRY_AFTER_UNAVAILABLE_SECONDS });
  }
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return new ApiError(413, "invalid_request_error", "body_too_large", "Request bodies are limited to 64 KiB");
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return new ApiError(415, "invalid_request_error", "unsupported_media_type", "Request bodies must be JSON: send `Content-Type: application/json`");
    case "FST_ERR_CTP_EMPTY_JSON_BODY":
      return new ApiError(400, "invalid_request_error", "body_missing", "Content-Type is application/json but the body is empty: send `{}` or no Content-Type");
    case "FST_ERR_CTP_INVALID_JSON_BODY":
      return new ApiError(400, "invalid_request_error", "body_invalid_json", "The request body is not valid JSON");
  }
  if (error.statusCode !== undefined && error.statusCode >= 400 && error.statusCode < 500) {
    return new ApiError(error.statusCode, "invalid_request_error", (error.code ?? "invalid_request").toLowerCase(), error.message);
  }
  const what = isResponseSerializationError(error) ? "response does not match its schema" : "request failed";
  logger.error({ err: loggableError(error), method }, `API ${what}`);
  return new ApiError(500, "api_error", "internal_error", "Something went wrong on our side; it has been logged. Retry later");
}
