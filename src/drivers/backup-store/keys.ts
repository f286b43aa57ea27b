/**
 * Object keys and locations shared by the stores. A key is a relative path of safe segments
 * (`<instance>/<backup>-<component>.tar.gz.enc`): no `..`, no leading `/`, nothing a shell, a URL or
 * a file system would read differently.
 */
const SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$/;

/** Throws unless `key` is 1 to 8 safe segments separated by `/`. */
export function checkKey(key: string): string {
  const segments = key.split("/");
  if (segments.length > 8 || !segments.every((segment) => SEGMENT.test(segment) && !segment.endsWith(".partial"))) {
    throw new Error(`invalid backup object key ${JSON.stringify(key.slice(0, 120))}: expected safe path segments such as <instance>/<backup>.tar.gz.enc`);
  }
  return key;
}

/** The part of `location` after `scheme`, or a clear error naming the store that cannot read it. */
export function stripScheme(location: string, scheme: string, store: string): string {
  if (!location.startsWith(scheme)) {
    throw new Error(`backup location ${JSON.stringify(location.slice(0, 200))} is not in the ${store} store (expected ${scheme}...)`);
  }
  return location.slice(scheme.length);
}

/** `<bucket>/<key>` after the scheme of an object-store location. */
export function splitBucket(rest: string, location: string): { bucket: string; key: string } {
  const slash = rest.indexOf("/");
  if (slash <= 0 || slash === rest.length - 1) throw new Error(`backup location ${JSON.stringify(location.slice(0, 200))} has no bucket or key`);
  return { bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
}

/** A signal that aborts with `signal` or after `timeoutMs`, whichever comes first. */
export function bounded(timeoutMs: number, signal?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal ? AbortSignal.any([signal, timeout]) : timeout;
}

/**
 * Runs `call` with a signal that aborts with `signal`, or when `call` has not settled within
 * `timeoutMs`. Unlike `bounded`, the deadline ends once `call` settles, so a response body that
 * streams on afterwards (a multi-GB download) is cut only by `signal` and the socket idle timeout.
 */
export async function withDeadline<T>(timeoutMs: number, signal: AbortSignal | undefined, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(signal?.reason);
  if (signal?.aborted) onAbort();
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(() => controller.abort(new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
  try {
    return await call(controller.signal);
  } finally {
    clearTimeout(timer);
  }
}
