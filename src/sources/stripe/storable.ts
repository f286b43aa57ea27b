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

/**
 * Why this event can never be stored, or null when it can. `parsed` is the parsed body; `body`,
 * when given, the UTF-8 bytes it was parsed from, which make the common case cheap: a body with no
 * `\u0000` and no surrogate escape, nested no deeper than the limit, holds nothing Postgres
 * refuses, and is passed without the walk over every value (about 25 µs of the request thread's
 * time per event in the daemon). Anything else gets the walk, which also names the path.
 */
export function unstorableReason(event: { readonly created: number }, parsed: unknown, body?: Buffer): string | null {
  if (!Number.isSafeInteger(event.created) || event.created < 0 || event.created > MAX_CREATED_SECONDS) {
    return "event created is not a time Postgres can store (must be between 1970 and year 9999)";
  }
  if (body !== undefined && plainlyStorable(body)) return null;
  return payloadProblem(parsed);
}

/**
 * True when JSON text, decoded as UTF-8, cannot hold a string Postgres refuses and is nested at
 * most MAX_PAYLOAD_DEPTH deep. JSON forbids a raw NUL in a string, so a NUL can only come from the
 * escape `\u0000`; UTF-8 decoding turns any byte sequence that is not a character into U+FFFD, so a
 * lone surrogate can only come from an escape `\uD800`-`\uDFFF`. False means "not sure", never
 * "refused": the escapes may be paired or themselves escaped.
 */
function plainlyStorable(json: Buffer): boolean {
  if (json.includes(NUL_ESCAPE)) return false;
  for (const escape of SURROGATE_ESCAPE_STARTS) if (json.includes(escape)) return false;
  return nestingDepth(json) <= MAX_PAYLOAD_DEPTH;
}

const NUL_ESCAPE = "\\u0000";
/** The escapes of U+D800 to U+DFFF all start so (hex digits in either case); most bodies hold none. */
const SURROGATE_ESCAPE_STARTS = ["\\ud", "\\uD"];

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const OPEN_OBJECT = 0x7b;
const CLOSE_ARRAY = 0x5d;
const CLOSE_OBJECT = 0x7d;

/** The deepest nesting of arrays and objects in JSON text (brackets inside strings do not count). */
function nestingDepth(json: Buffer): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const byte = json[i]!;
    if (inString) {
      if (byte === BACKSLASH) i++;
      else if (byte === QUOTE) inString = false;
    } else if (byte === QUOTE) inString = true;
    else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) deepest = Math.max(deepest, ++depth);
    else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) depth--;
  }
  return deepest;
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
