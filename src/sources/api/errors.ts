/**
 * Errors of the `/v1` API, shaped like Stripe's: `{"error": {"type", "code", "message", "param"?,
 * "request_id"}}` with the status that says what the client must do. Messages name the problem and
 * the way out; they never quote a key, a secret or another account's data.
 */
import { z } from "zod";

export const ERROR_TYPES = [
  "invalid_request_error",
  "authentication_error",
  "permission_error",
  "idempotency_error",
  "rate_limit_error",
  "api_error",
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

export const errorSchema = z
  .object({
    error: z.object({
      type: z.enum(ERROR_TYPES),
      code: z.string(),
      message: z.string(),
      param: z.string().optional(),
      request_id: z.string(),
    }),
  })
  .meta({ id: "Error" });

export class ApiError extends Error {
  override readonly name = "ApiError";
  constructor(
    readonly status: number,
    readonly type: ErrorType,
    readonly code: string,
    message: string,
    readonly extra: { readonly param?: string; readonly retryAfterSeconds?: number } = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string, id: string): ApiError =>
  new ApiError(404, "invalid_request_error", "resource_missing", `No such ${what}: '${id}'`, { param: "id" });

export const conflict = (code: string, message: string): ApiError => new ApiError(409, "invalid_request_error", code, message);

export function errorBody(error: ApiError, requestId: string): z.infer<typeof errorSchema> {
  return {
    error: {
      type: error.type,
      code: error.code,
      message: error.message,
      ...(error.extra.param !== undefined && { param: error.extra.param }),
      request_id: requestId,
    },
  };
}

/** The statuses every route may answer with an error, for the OpenAPI document. */
export const ERROR_STATUSES = [400, 401, 403, 404, 409, 413, 415, 429, 500, 503] as const;

export function errorResponses(): Record<(typeof ERROR_STATUSES)[number], typeof errorSchema> {
  return Object.fromEntries(ERROR_STATUSES.map((status) => [status, errorSchema])) as Record<(typeof ERROR_STATUSES)[number], typeof errorSchema>;
}
