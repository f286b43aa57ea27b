/**
 * Wraps an async function of no arguments so every call after the first returns the first call's
 * promise (a teardown that runs once, a module loaded on first use).
 */
export function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let first: Promise<T> | undefined;
  return () => (first ??= fn());
}
