/**
 * Stripe's wire format for parameters: `application/x-www-form-urlencoded` (POST bodies) and query
 * strings (GET, DELETE), with bracket notation: `items[0][price]=p`, `expand[]=x`, `expand[0]=x`,
 * `metadata[tier]=starter`, `created[gte]=1700000000`. Numeric or empty brackets make arrays.
 */
export type FormValue = string | FormValue[] | { [key: string]: FormValue };
export type FormObject = { [key: string]: FormValue };

export function parseForm(encoded: string): FormObject {
  const root: FormObject = {};
  for (const [rawKey, value] of new URLSearchParams(encoded)) {
    const path = splitKey(rawKey);
    assign(root, path, value);
  }
  return root;
}

function splitKey(key: string): string[] {
  const head = key.indexOf("[");
  if (head < 0) return [key];
  const parts = [key.slice(0, head)];
  for (const match of key.slice(head).matchAll(/\[([^\]]*)\]/g)) parts.push(match[1] ?? "");
  return parts;
}

function assign(target: FormObject | FormValue[], path: string[], value: string): void {
  const [first, ...rest] = path;
  if (first === undefined) return;
  const key: string | number = Array.isArray(target) ? (first === "" ? target.length : Number(first)) : first;
  if (rest.length === 0) {
    (target as Record<string | number, FormValue>)[key] = value;
    return;
  }
  const container = target as Record<string | number, FormValue | undefined>;
  let next = container[key];
  if (next === undefined || typeof next === "string") {
    next = rest[0] === "" || /^\d+$/.test(rest[0]!) ? [] : {};
    container[key] = next;
  }
  assign(next as FormObject | FormValue[], rest, value);
}

export const str = (v: FormValue | undefined): string | undefined => (typeof v === "string" ? v : undefined);
export const num = (v: FormValue | undefined): number | undefined => (typeof v === "string" && v !== "" ? Number(v) : undefined);
export const obj = (v: FormValue | undefined): FormObject | undefined => (v !== undefined && typeof v === "object" && !Array.isArray(v) ? v : undefined);
export const arr = (v: FormValue | undefined): FormValue[] | undefined => (Array.isArray(v) ? v : undefined);
