/**
 * Content hashes of desired state. Pure and deterministic: the same value always gives the same
 * hash, whatever the key order of its objects, so a hash only changes when the content does.
 */
import { createHash } from "node:crypto";

/** Hex characters kept from the sha256 digest (128 bits: collisions are not a concern). */
export const HASH_LENGTH = 32;

/** JSON with object keys sorted at every level; arrays keep their order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(v).sort()) sorted[key] = (v as Record<string, unknown>)[key];
    return sorted;
  });
}

/** The first HASH_LENGTH hex characters of sha256(canonicalJson(value)). */
export function contentHash(value: unknown): string {
  return createHash("sha256").update(canonicalJson(value)).digest("hex").slice(0, HASH_LENGTH);
}
