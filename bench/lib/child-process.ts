/**
 * Parts of a benchmark in processes of their own (a load generator, the measured controller), so
 * that what is measured shares no event loop with what drives it. The parent forks a module with
 * `runInChildProcess`, which sends it one request over IPC; the module answers through
 * `serveOverIpc` with `{result}` or `{error}` and exits. Every wait is bounded and says what did
 * not happen.
 */
import { type ChildProcess, fork } from "node:child_process";

/** How long a child may take to exit when asked before it is killed. */
const STOP_MS = 30_000;

export interface ChildRunOptions {
  /** The answer must arrive within this long... */
  readonly limitMs: number;
  /** ...or the run fails with this message. */
  readonly timeoutMessage: string;
  /** Names the child in errors. */
  readonly label: string;
  /** Node's flags for the child; the default runs TypeScript through tsx. */
  readonly execArgv?: readonly string[];
  /** Aborting asks the child to stop (SIGTERM: it cleans up, answers with an error and exits). */
  readonly signal?: AbortSignal;
}

/** Forks `module`, sends it `request` and waits for its answer; the child is gone when this settles. */
export async function runInChildProcess<Request, Result>(module: string, request: Request, options: ChildRunOptions): Promise<Result> {
  const child = fork(module, [], { execArgv: [...(options.execArgv ?? ["--import", "tsx"])], stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const onAbort = (): void => void child.kill("SIGTERM");
  options.signal?.addEventListener("abort", onAbort, { once: true });
  const answer = new Promise<Result>((resolve, reject) => {
    child.once("message", (message: { result?: Result; error?: string }) => (message.result ? resolve(message.result) : reject(new Error(`${options.label}: ${message.error}`))));
    child.once("exit", (code, signal) => reject(new Error(`${options.label} exited (${signal ?? `exit ${code}`}) before it answered`)));
  });
  child.send(request as never);
  try {
    return await within(options.limitMs, options.timeoutMessage, answer);
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await stopChild(child, "SIGTERM");
  }
}

/**
 * In a module forked by `runInChildProcess`: runs `run` on the one request that arrives, answers
 * and exits. `signal` aborts when the parent asks the child to stop (SIGTERM, SIGINT) or goes away.
 */
export function serveOverIpc<Request, Result>(run: (request: Request, signal: AbortSignal) => Promise<Result>): void {
  if (!process.send) return;
  const stop = new AbortController();
  const abort = (): void => stop.abort(new Error("interrupted"));
  process.once("SIGTERM", abort);
  process.once("SIGINT", abort);
  process.once("disconnect", abort);
  process.once("message", (request: Request) => {
    void run(request, stop.signal).then(
      (result) => process.send?.({ result }, () => process.exit(0)),
      (error: unknown) => process.send?.({ error: String(error) }, () => process.exit(1)),
    );
  });
}

/**
 * Kills `child` if this process exits first, so that a benchmark ending on an error it did not
 * catch, or on EPIPE when its output is cut short (`| head`), leaves no daemon running behind it:
 * a child without an IPC channel (a spawned daemon) has no other way to notice. Exits by SIGKILL,
 * or by a signal this process does not handle, run no exit handler; a terminal's Ctrl-C reaches
 * the children itself.
 */
export function endsWithThisProcess(child: ChildProcess): void {
  const kill = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  };
  process.once("exit", kill);
  child.once("exit", () => process.off("exit", kill));
}

/** Ends a child (a signal, or "disconnect" for an IPC child that exits on it) and waits for it, SIGKILL after STOP_MS. */
export async function stopChild(child: ChildProcess, how: NodeJS.Signals | "disconnect"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (how === "disconnect") child.disconnect();
  else child.kill(how);
  await within(STOP_MS, "child did not exit", exited).catch(() => {
    child.kill("SIGKILL");
    return exited;
  });
}

/** `promise`, or a rejection saying `message` after `ms`. */
export function within<T>(ms: number, message: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
