/**
 * SSH transport to one Dokku host: a small connection pool behind the narrow `CommandRunner`
 * interface, so everything above it can be tested with recorded output.
 *
 * Contracts:
 * - At most `channelsPerConnection` (default 8, below sshd's MaxSessions 10) channels are open on
 *   one connection; further commands use another connection of the pool or wait in FIFO order.
 * - Host keys are pinned (HostRef.hostKey, or the key learned on first contact); a changed key is
 *   a TerminalError `HostKeyMismatch`. Never a pty, never a cwd; stdin is closed at once (EOF).
 * - An exit status is the only success signal. A channel that closes without one raises
 *   `OutcomeUnknownError`: the command may or may not have taken effect.
 * - Failed connections are retried lazily, with jittered exponential backoff between attempts.
 * - While the host is known not to answer, commands fail at once with `HostDown` (a retryable,
 *   host-down SshError), one trial command at a time going through (host-breaker.ts).
 */
import { setTimeout as delay } from "node:timers/promises";

import ssh2, { type Client as SshClient, type ClientChannel, type ConnectConfig } from "ssh2";

// ssh2 is CommonJS: under plain Node ESM only its default export is available.
const { Client } = ssh2;

import { attachHidden, OutcomeUnknownError, TerminalError } from "../../errors.ts";
import type { HostRef } from "../../reconciler/types.ts";
import { renderCommand, subcommandOf } from "./commands.ts";
import { HostBreaker } from "./host-breaker.ts";
import { fingerprint, hostKeyMismatch, keyBlobOf, lineOf } from "./hostkey.ts";

export interface RunOptions {
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
  /** Binary streaming: stdout chunks go here as Buffers and the result's `stdout` is empty. */
  readonly stdout?: NodeJS.WritableStream;
  /**
   * Piped to the command's stdin, then EOF (without it, EOF at once). An error of this stream
   * closes the channel and fails the run with that error.
   */
  readonly stdin?: NodeJS.ReadableStream;
}

/** The byte streams of one command beyond its captured output. */
interface ChannelIo {
  readonly sink?: NodeJS.WritableStream | undefined;
  readonly source?: NodeJS.ReadableStream | undefined;
}

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs one Dokku command (argv words, rendered by `renderCommand`). Safe to call concurrently. */
export interface CommandRunner {
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  close(): Promise<void>;
}

export interface LoggerLike {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

/** A retryable transport failure. `hostDown` marks failures that say the host is unreachable. */
export class SshError extends Error {
  override readonly name = "SshError";
  constructor(
    readonly reason: string,
    message: string,
    public hostDown: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface PoolOptions {
  readonly host: HostRef;
  readonly privateKey: string | Buffer;
  readonly logger: LoggerLike;
  readonly connections: number;
  readonly channelsPerConnection: number;
  readonly defaultTimeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly readyTimeoutMs: number;
  /** Longest command line the host accepts (see commands.ts MAX_COMMAND_BYTES). */
  readonly maxCommandBytes?: number;
  /** Told whether the host answers: after a liveness probe that follows a stalled command. */
  readonly onHostState?: (up: boolean) => void;
  /** Called once per learned key (trust on first use); the connection waits for it. */
  readonly onHostKeyLearned?: (hostId: string, hostKey: string) => Promise<void> | void;
}

/** ±50% jitter around min·2^attempt, capped (graphile-worker's calculateDelay). */
export function backoffDelay(attempt: number, minMs = 100, maxMs = 10_000): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.5 + Math.random()));
}

interface Connection {
  readonly client: SshClient;
  readonly ready: Promise<void>;
  active: number;
  dead: boolean;
}

/** Rejects with the signal's reason when it aborts. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export class SshPool implements CommandRunner {
  private readonly connections: Connection[] = [];
  private readonly waiters: Array<() => void> = [];
  private failures = 0;
  private learnedKey: string | null = null;
  private learning: Promise<void> | null = null;
  private closed = false;
  private probing = false;
  private readonly breaker: HostBreaker;
  /** The most channels ever open at once on one connection (for tests and benchmarks). */
  peakChannels = 0;
  /** Connections opened over the pool's life. */
  connectionsOpened = 0;

  constructor(private readonly options: PoolOptions) {
    this.breaker = new HostBreaker((failures) => backoffDelay(failures, 1_000, 30_000));
  }

  /** Fails at once with `HostDown` while the host is known not to answer (host-breaker.ts). */
  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const command = renderCommand(argv, this.options.maxCommandBytes);
    const admitted = this.breaker.admit();
    if ("refusedForMs" in admitted) {
      const next = admitted.refusedForMs > 0 ? `next attempt in ${Math.ceil(admitted.refusedForMs / 1000)} s` : "a trial command is running";
      throw attachHidden(new SshError("HostDown", `${this.options.host.name} is not answering (${next})`, true), { argv });
    }
    const { admission } = admitted;
    try {
      const result = await this.runAdmitted(command, argv, opts);
      this.breaker.settle(admission, "answered");
      return result;
    } catch (err) {
      const unreachable = err instanceof SshError && err.hostDown;
      // Only an exit status proves the host answers; a stalled channel is for the probe to judge.
      this.breaker.settle(admission, unreachable ? "unreachable" : "unknown");
      throw err;
    }
  }

  private async runAdmitted(command: string, argv: readonly string[], opts: RunOptions): Promise<RunResult> {
    const timeoutMs = opts.timeoutMs ?? this.options.defaultTimeoutMs;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(this.timeoutError(argv, timeoutMs, false)), timeoutMs);
    const onAbort = (): void => deadline.abort(opts.signal?.reason);
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (opts.signal?.aborted) onAbort();
    try {
      const connection = await this.acquire(deadline.signal);
      try {
        await abortable(connection.ready, deadline.signal).catch((err: unknown) => {
          throw this.connectError(err, deadline.signal);
        });
        return await this.exec(connection, command, argv, deadline.signal, { sink: opts.stdout, source: opts.stdin });
      } finally {
        this.release(connection);
      }
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const connection of this.connections.splice(0)) {
      connection.dead = true;
      connection.client.end();
    }
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** Takes a channel slot on the least busy live connection, opening one if allowed, or waits. */
  private async acquire(signal: AbortSignal): Promise<Connection> {
    for (;;) {
      if (this.closed) throw new SshError("DriverClosed", "the Dokku driver is closed", false);
      if (signal.aborted) throw signal.reason as Error;
      const live = this.connections.filter((c) => !c.dead);
      const best = live.reduce<Connection | undefined>((a, c) => (a === undefined || c.active < a.active ? c : a), undefined);
      let chosen = best && best.active < this.options.channelsPerConnection ? best : undefined;
      if ((!chosen || chosen.active > 0) && live.length < this.options.connections) chosen = this.open();
      if (chosen) {
        chosen.active += 1;
        this.peakChannels = Math.max(this.peakChannels, chosen.active);
        return chosen;
      }
      await abortable(new Promise<void>((resolve) => this.waiters.push(resolve)), signal);
    }
  }

  private release(connection: Connection): void {
    connection.active -= 1;
    this.waiters.shift()?.();
  }

  private open(): Connection {
    const client = new Client();
    const attempt = this.failures;
    const connection: Connection = { client, active: 0, dead: false, ready: Promise.resolve() };
    let keyError: Error | undefined;
    const ready = (async (): Promise<void> => {
      if (attempt > 0) await delay(backoffDelay(attempt), undefined, { ref: false });
      await new Promise<void>((resolve, reject) => {
        // Small request/response packets: Nagle plus delayed ACKs would add ~40 ms per command.
        client.once("ready", () => {
          client.setNoDelay(true);
          resolve();
        });
        client.on("error", (err) => reject(keyError ?? err));
        client.on("close", () => reject(keyError ?? new Error("connection closed before it was ready")));
        client.connect(this.connectConfig((err) => (keyError = err)));
      });
    })();
    ready.then(
      () => (this.failures = 0),
      () => {
        this.failures += 1;
        this.drop(connection);
      },
    );
    client.on("close", () => this.drop(connection));
    client.on("error", (err) => this.options.logger.debug({ host: this.options.host.name, err: err.message }, "ssh connection error"));
    Object.assign(connection, { ready });
    this.connections.push(connection);
    this.connectionsOpened += 1;
    return connection;
  }

  private drop(connection: Connection): void {
    connection.dead = true;
    const index = this.connections.indexOf(connection);
    if (index >= 0) this.connections.splice(index, 1);
    for (const wake of this.waiters.splice(0)) wake();
  }

  private connectConfig(onKeyError: (err: Error) => void): ConnectConfig {
    const url = new URL(this.options.host.sshUrl);
    return {
      host: url.hostname.replace(/^\[|\]$/g, ""),
      port: url.port ? Number(url.port) : 22,
      username: decodeURIComponent(url.username || "dokku"),
      privateKey: this.options.privateKey,
      readyTimeout: this.options.readyTimeoutMs,
      keepaliveInterval: this.options.keepaliveIntervalMs,
      keepaliveCountMax: 3,
      hostVerifier: (key: Buffer, verify: (valid: boolean) => void) => {
        this.verifyHostKey(key).then(
          () => verify(true),
          (err: unknown) => {
            onKeyError(err instanceof Error ? err : new Error(String(err)));
            verify(false);
          },
        );
      },
    };
  }

  /** Pinned key, else the key learned earlier in this process, else trust on first use. */
  private async verifyHostKey(presented: Buffer): Promise<void> {
    if (this.learning) await this.learning.catch(() => undefined);
    const pinned = this.options.host.hostKey ?? this.learnedKey;
    if (pinned !== null) {
      const expected = keyBlobOf(pinned);
      if (!expected.equals(presented)) throw hostKeyMismatch(this.options.host.name, expected, presented);
      return;
    }
    const line = lineOf(presented);
    this.learning = (async () => {
      this.options.logger.warn(
        { host: this.options.host.name, fingerprint: fingerprint(presented) },
        "no pinned host key: trusting the key presented on first contact",
      );
      await this.options.onHostKeyLearned?.(this.options.host.id, line);
      this.learnedKey = line;
    })();
    await this.learning;
  }

  private exec(connection: Connection, command: string, argv: readonly string[], signal: AbortSignal, io: ChannelIo): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      let channel: ClientChannel | undefined;
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener("abort", onAbort);
        fn();
      };
      const onAbort = (): void => {
        const opened = channel !== undefined;
        const reason = signal.reason as Error;
        // A channel the server never confirmed means the transport itself is stuck.
        if (!opened) {
          if (reason instanceof SshError && reason.reason === "Timeout") reason.hostDown = true;
          this.drop(connection);
          connection.client.destroy();
        } else {
          channel?.close();
          if (reason instanceof SshError && reason.reason === "Timeout") this.probe();
        }
        settle(() => reject(reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) return onAbort();
      if (connection.dead) {
        return settle(() => reject(new SshError("ConnectionFailed", `connection to ${this.options.host.name} was lost`, true)));
      }
      const opened = (err: Error | undefined, stream: ClientChannel): void => {
        if (err) return settle(() => reject(new SshError("ChannelOpenFailed", `could not open an ssh channel: ${err.message}`, false, { cause: err })));
        if (settled) return void stream.close();
        channel = stream;
        this.collect(stream, argv, io, (result) => settle(() => (result instanceof Error ? reject(result) : resolve(result))));
      };
      try {
        connection.client.exec(command, opened);
      } catch (err) {
        // ssh2 throws "Not connected" synchronously when the socket has just gone.
        this.drop(connection);
        settle(() => reject(new SshError("ConnectionFailed", `connection to ${this.options.host.name} was lost`, true, { cause: err })));
      }
    });
  }

  /**
   * Reads both streams to the end; resolves on an exit status, fails when none arrived. With a
   * sink, resolves only once the sink has taken every chunk (each write's callback has run), so a
   * caller that reads what the sink holds right after `run` sees the whole output.
   */
  private collect(stream: ClientChannel, argv: readonly string[], { sink, source }: ChannelIo, done: (result: RunResult | Error) => void): void {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let exitCode: number | null = null;
    const sinkWrites = pendingWrites();
    stream.on("data", (chunk: Buffer) => {
      if (!sink) return void out.push(chunk);
      if (!sink.write(chunk, sinkWrites.track())) {
        stream.pause();
        sink.once("drain", () => stream.resume());
      }
    });
    stream.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    stream.on("exit", (code: number | null) => (exitCode = typeof code === "number" ? code : null));
    stream.on("close", () => {
      const stderr = Buffer.concat(err).toString("utf8");
      if (exitCode === null) {
        const lost = new OutcomeUnknownError(`${subcommandOf(argv)} on ${this.options.host.name}: connection closed before an exit status arrived`);
        return done(attachHidden(lost, { argv, stderr, reason: "ConnectionDropped" }));
      }
      const code = exitCode;
      // A sink that never takes its last chunks is bounded by the command's deadline, still armed.
      sinkWrites.drained(() => done({ exitCode: code, stdout: Buffer.concat(out).toString("utf8"), stderr }));
    });
    if (!source) return void stream.end();
    source.once("error", (error: Error) => {
      source.unpipe(stream);
      stream.close();
      done(error);
    });
    source.pipe(stream);
  }

  /**
   * A command stalled on an open channel: slow command or a host that stopped answering? A fresh
   * handshake tells. If it fails, the pooled connections are stale: drop them so the next
   * command reconnects (with backoff).
   */
  private probe(): void {
    if (this.probing || this.closed) return;
    this.probing = true;
    const client = new Client();
    const finish = (up: boolean): void => {
      if (!this.probing) return;
      this.probing = false;
      client.destroy();
      this.options.onHostState?.(up);
      if (up) return;
      this.breaker.trip();
      for (const connection of [...this.connections]) {
        this.drop(connection);
        connection.client.destroy();
      }
    };
    client.once("ready", () => finish(true));
    client.on("error", () => finish(false));
    client.on("close", () => finish(false));
    client.connect({ ...this.connectConfig(() => undefined), readyTimeout: Math.min(this.options.readyTimeoutMs, 5_000) });
  }

  private timeoutError(argv: readonly string[], timeoutMs: number, hostDown: boolean): SshError {
    return attachHidden(new SshError("Timeout", `${subcommandOf(argv)} on ${this.options.host.name} timed out after ${timeoutMs} ms`, hostDown), { argv });
  }

  private connectError(err: unknown, signal: AbortSignal): Error {
    if (signal.aborted && err === signal.reason) {
      if (err instanceof SshError) err.hostDown = true;
      return err as Error;
    }
    if (err instanceof TerminalError) return err;
    const message = err instanceof Error ? err.message : String(err);
    if (/authentication methods failed/i.test(message)) {
      return new TerminalError("AuthFailed", `ssh authentication to ${this.options.host.name} failed`, { cause: err });
    }
    return new SshError("ConnectionFailed", `cannot connect to ${this.options.host.name}: ${message}`, true, { cause: err });
  }
}

/** Counts writes whose callback has not run yet; `drained` fires once none is outstanding. */
function pendingWrites(): { track: () => () => void; drained: (then: () => void) => void } {
  let outstanding = 0;
  let waiting: (() => void) | null = null;
  return {
    track: () => {
      outstanding += 1;
      return () => {
        outstanding -= 1;
        if (outstanding === 0 && waiting) waiting();
      };
    },
    drained: (then) => (outstanding === 0 ? then() : void (waiting = then)),
  };
}
