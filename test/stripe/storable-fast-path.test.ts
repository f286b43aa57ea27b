/**
 * `unstorableReason` with the body's bytes takes a shortcut for the common body (no `\u0000`, no
 * surrogate escape, not too deep) and walks every value otherwise. The shortcut must never change
 * the answer: for any JSON, with or without the bytes, the reason is the same.
 */
import fc from "fast-check";
import { expect, test } from "vitest";

import { MAX_PAYLOAD_DEPTH, unstorableReason } from "../../src/sources/stripe/storable.ts";

const EVENT = { created: 1_700_000_000 };

/** Strings of any UTF-16 code units, NUL and lone surrogates included, and the characters that need escapes in JSON. */
const anyText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 8 }),
  fc.string({ unit: fc.constantFrom("a", "\\", '"', "\u0000", "\ud800", "\udc00", "\ud83d\ude00", "[", "{", "}", "]", "é"), maxLength: 8 }),
);

/** JSON values, some nested past MAX_PAYLOAD_DEPTH. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    anyText,
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(anyText, tie("value"), { maxKeys: 3 }),
  ),
})).value;

const nested = (depth: number, inner: unknown): unknown => (depth === 0 ? inner : { a: [nested(depth - 1, inner)] });

test("the reason is the same with the body's bytes as without them, for any JSON", () => {
  fc.assert(
    fc.property(anyJson, fc.integer({ min: 0, max: MAX_PAYLOAD_DEPTH }), (value, wrap) => {
      const body = Buffer.from(JSON.stringify(nested(Math.floor(wrap / 2), { data: { object: value } })), "utf8");
      const parsed: unknown = JSON.parse(body.toString("utf8"));
      expect(unstorableReason(EVENT, parsed, body)).toBe(unstorableReason(EVENT, parsed));
    }),
    { numRuns: 2_000 },
  );
});

test("the limit of nesting is the same on both paths, at the limit and one past it", () => {
  for (const levels of [MAX_PAYLOAD_DEPTH - 1, MAX_PAYLOAD_DEPTH, MAX_PAYLOAD_DEPTH + 1]) {
    const body = Buffer.from(JSON.stringify({ deep: JSON.parse("[".repeat(levels) + "]".repeat(levels)) as unknown }));
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    expect(unstorableReason(EVENT, parsed, body), `${levels} levels`).toBe(unstorableReason(EVENT, parsed));
  }
});

test("escaped look-alikes (\\\\u0000 is a backslash and text) are stored, as the walk says", () => {
  const body = Buffer.from(JSON.stringify({ note: "\\u0000 and \\ud800 are only text here" }));
  const parsed: unknown = JSON.parse(body.toString("utf8"));
  expect(unstorableReason(EVENT, parsed, body)).toBeNull();
  expect(unstorableReason(EVENT, parsed)).toBeNull();
});
