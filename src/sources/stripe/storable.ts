/**
 * Pure: whether Postgres can ever store a verified Stripe event in the inbox (`stripe_events`:
 * `created timestamptz`, `payload jsonb`). An event it never can must get 400 (with the reason)
 * rather than 500, which Stripe would retry for three days to the same failure. Reasons name what
 * is wrong and where (a JSON path), never the offending value: it is customer data.
 *
 * What jsonb and timestamptz refuse, checked here before the insert:
 * - `\u0000` in any string or key (jsonb text cannot hold NUL);
 * - an unpaired UTF-16 surrogate (`\ud800`): not a Unicode character, refused by jsonb;
 * - nesting deeper than MAX_PAYLOAD_DEPTH (Postgres's parser stops at its stack depth limit; a
 *   Stripe object with every expansion is a dozen levels deep);
 * - `created` outside [0, MAX_CREATED_SECONDS]: year 10000 and later cannot be written as an ISO
 *   timestamp Postgres parses, and 2^53-1 seconds is no date at all.
 */

/** Latest event `created`: 9999-12-31T23:59:59Z. */
export const MAX_CREATED_SECONDS = 253_402_300_799;
/** Deepest nesting accepted in an event payload. */
export const MAX_PAYLOAD_DEPTH = 64;

const UNPAIRED_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Why this event can never be stored, or null when it can. `event` is the parsed body. */
export function unstorableReason(event: { readonly created: number }, parsed: unknown): string | null {
  if (!Number.isSafeInteger(event.created) || event.created < 0 || event.created > MAX_CREATED_SECONDS) {
    return "event created is not a time Postgres can store (must be between 1970 and year 9999)";
  }
  return payloadProblem(parsed);
}

/** Walks the payload iteratively (a recursive walk would overflow on the nesting it must refuse). */
function payloadProblem(root: unknown): string | null {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value: root, path: "$", depth: 0 }];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    if (typeof value === "string") {
      const problem = stringProblem(value);
      if (problem) return `payload ${path} ${problem}`;
      continue;
    }
    if (value === null || typeof value !== "object") continue;
    if (depth >= MAX_PAYLOAD_DEPTH) return `payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels (at ${path})`;
    for (const [key, child] of Object.entries(value)) {
      const problem = stringProblem(key);
      if (problem) return `payload key in ${path} ${problem}`;
      stack.push({ value: child, path: Array.isArray(value) ? `${path}[${key}]` : `${path}.${safeKey(key)}`, depth: depth + 1 });
    }
  }
  return null;
}

function stringProblem(text: string): string | null {
  if (text.includes("\u0000")) return "contains a NUL character (\\u0000), which Postgres cannot store";
  if (UNPAIRED_SURROGATE.test(text)) return "contains an unpaired UTF-16 surrogate, which is not valid Unicode";
  return null;
}

/** Keys appear in reasons only when they look like Stripe's own field names. */
function safeKey(key: string): string {
  return /^[A-Za-z0-9_]{1,64}$/.test(key) ? key : "<key>";
}
