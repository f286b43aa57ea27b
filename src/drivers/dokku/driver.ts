/**
 * The Dokku implementation of the reconciler's `Driver` (src/reconciler/types.ts).
 *
 * Contracts (in addition to the interface's):
 * - Every argument is validated and rendered before any connection is touched (commands.ts).
 * - Mutations: at most `hostConcurrency` at once per host, and one at a time per app (the per-app
 *   lock is taken first, so an app waiting for itself does not hold a host slot). Observations are
 *   not limited here; they only share the pool's channel limit.
 * - "Already so" answers are success; everything else is classified by classify.ts into
 *   TerminalError or a retryable `DokkuCommandError`. Errors carry `argv`, `exitCode` and `stderr`
 *   as non-enumerable properties, and messages never contain config values.
 */
import { Writable } from "node:stream";

import pLimit, { type LimitFunction } from "p-limit";
import type { Registry } from "prom-client";
import ssh2 from "ssh2";

// ssh2 is CommonJS: under plain Node ESM only its default export is available.
const { utils } = ssh2;

import { attachHidden, OutcomeUnknownError, TerminalError } from "../../errors.ts";
import type { Action, ArchiveAction, ArchiveTransfer, Driver, HostRef, ObservedApp, ObservedHost } from "../../reconciler/types.ts";
import { classify } from "./classify.ts";
import { actionCommands, backupCommand, type Command, MAX_COMMAND_BYTES, observeCommands, restoreCommands, subcommandOf } from "./commands.ts";
import { createDriverMetrics, type DriverMetrics, initHostMetrics } from "./metrics.ts";
import {
  BulkPsParser,
  observedFromPs,
  parseConfigExport,
  parseDeployedImage,
  parseDomains,
  parseReport,
  parseResources,
  parseStorageList,
  parseTlsActive,
} from "./parse.ts";
import { type CommandRunner, type LoggerLike, type RunOptions, type RunResult, SshError, SshPool } from "./ssh.ts";
import { type DokkuVersion, parseVersion } from "./version.ts";

export type { CommandRunner, LoggerLike, RunOptions, RunResult } from "./ssh.ts";

export interface DokkuDriverOptions {
  readonly privateKey: string | Buffer;
  readonly registry: Registry;
  readonly logger?: LoggerLike;
  /** Mutating commands at once per host (default 4). */
  readonly hostConcurrency?: number;
  /** Per-command timeout (default 120 s; `git:from-image` deploys can be slow). */
  readonly commandTimeoutMs?: number;
  /** Timeout of one backup stream (default 30 min). */
  readonly backupTimeoutMs?: number;
  /** SSH connections per host (default 2), each with at most 8 channels. */
  readonly connectionsPerHost?: number;
  readonly keepaliveIntervalMs?: number;
  /**
   * Longest command line to send to a host whose HostRef names no limit of its own (default
   * 130000, under Linux's 131072 argument limit).
   */
  readonly maxCommandBytes?: number;
  readonly onHostKeyLearned?: (hostId: string, hostKey: string) => Promise<void> | void;
}

/** A command that completed with an answer that time may fix: retry with backoff. */
export class DokkuCommandError extends Error {
  override readonly name = "DokkuCommandError";
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** Counters for benchmarks and tests. */
export interface HostStats {
  readonly commands: number;
  readonly peakChannels: number;
  readonly connectionsOpened: number;
}

export interface DokkuDriver extends Driver {
  /** Escape hatch for benchmarks: one raw read-only command, counted like any other. */
  runRaw(host: HostRef, argv: readonly string[], opts?: RunOptions): Promise<RunResult>;
  stats(host: HostRef): HostStats;
}

const NOOP_LOGGER: LoggerLike = { info() {}, warn() {}, error() {}, debug() {} };
/** Only used to validate an action before its host's version is known; every variant validates alike. */
const LATEST: DokkuVersion = { major: 0, minor: 38, patch: 27, text: "0.38.27" };

interface HostState {
  readonly ref: HostRef;
  readonly runner: CommandRunner;
  readonly limit: LimitFunction;
  readonly appLocks: Map<string, Promise<void>>;
  version: Promise<DokkuVersion> | undefined;
  commands: number;
}

interface Settings {
  readonly metrics: DriverMetrics;
  readonly logger: LoggerLike;
  readonly hostConcurrency: number;
  readonly commandTimeoutMs: number;
  readonly backupTimeoutMs: number;
  readonly maxCommandBytes: number;
}

function reasonOf(err: unknown): string {
  if (err instanceof TerminalError || err instanceof SshError || err instanceof DokkuCommandError) return err.reason;
  if (err instanceof OutcomeUnknownError) return "ConnectionDropped";
  if (err instanceof Error && err.name === "AbortError") return "Aborted";
  return "Unknown";
}

/** The last ` !     ` line of a failure, for messages; never for config commands (values). */
function failureLine(command: Command, result: RunResult): string {
  if (command.subcommand.startsWith("config:")) return "";
  const lines = `${result.stderr}\n${result.stdout}`.split("\n").filter((l) => l.startsWith(" !     "));
  const last = lines.at(-1)?.slice(7).trim();
  return last ? `: ${last.slice(0, 300)}` : "";
}

class DokkuDriverImpl implements DokkuDriver {
  private readonly hosts = new Map<string, HostState>();

  constructor(
    private readonly runnerFor: (host: HostRef) => CommandRunner,
    private readonly settings: Settings,
  ) {}

  async observeHost(host: HostRef, signal?: AbortSignal): Promise<ObservedHost> {
    const version = await this.version(host, signal);
    // Parsed as it streams in: the report (about 1 KB per app) is never held whole.
    const parser = new BulkPsParser();
    const sink = new Writable({ write: (chunk: Buffer, _encoding, callback) => callback(void parser.write(chunk)) });
    const result = await this.exec(host, observeCommands.psReportAll(), { stdout: sink, ...(signal && { signal }) });
    if (result.exitCode === 20) throw new DokkuCommandError("AppVanished", `an app of ${host.name} vanished during ps:report; observe again`);
    if (result.exitCode !== 0) throw this.commandError(host, observeCommands.psReportAll(), result, "retryable", "ObserveFailed");
    return { hostId: host.id, dokkuVersion: version.text, apps: parser.end(), observedAt: new Date() };
  }

  async observeApps(host: HostRef, apps: readonly string[], signal?: AbortSignal): Promise<Map<string, ObservedApp>> {
    const opts = { ...(signal && { signal }) };
    const reports = await Promise.all(apps.map(async (app) => ({ app, result: await this.exec(host, observeCommands.psReport(app), opts) })));
    const observed = new Map<string, ObservedApp>();
    for (const { app, result } of reports) {
      if (result.exitCode === 20) continue;
      this.requireOk(host, observeCommands.psReport(app), result);
      observed.set(app, observedFromPs(app, parseReport(result.stdout)));
    }
    return observed;
  }

  async observeApp(host: HostRef, app: string, signal?: AbortSignal): Promise<ObservedApp | undefined> {
    const opts = { ...(signal && { signal }) };
    const read = (command: Command): Promise<RunResult> => this.exec(host, command, opts);
    const [ps, config, domains, storage, resources, appReport, tls] = await Promise.all([
      read(observeCommands.psReport(app)),
      read(observeCommands.configExport(app)),
      read(observeCommands.domains(app)),
      read(observeCommands.storage(app)),
      read(observeCommands.resources(app)),
      read(observeCommands.appReport(app)),
      read(observeCommands.tlsActive(app)),
    ]);
    if ([ps, config, domains, storage, resources, appReport].some((r) => r.exitCode === 20)) return undefined;
    this.requireOk(host, observeCommands.psReport(app), ps);
    this.requireOk(host, observeCommands.configExport(app), config);
    const env = parseConfigExport(config.stdout);
    this.requireOk(host, observeCommands.domains(app), domains);
    this.requireOk(host, observeCommands.storage(app), storage);
    this.requireOk(host, observeCommands.resources(app), resources);
    this.requireOk(host, observeCommands.appReport(app), appReport);
    return {
      ...observedFromPs(app, parseReport(ps.stdout)),
      deep: {
        specHash: env.MINDROOM_SPEC_HASH ?? null,
        domains: parseDomains(parseReport(domains.stdout)),
        mounts: parseStorageList(storage.stdout),
        resources: parseResources(parseReport(resources.stdout)),
        image: parseDeployedImage(parseReport(appReport.stdout)),
        // The letsencrypt plugin may be missing: then TLS is simply not on.
        tls: tls.exitCode === 0 && parseTlsActive(tls.stdout),
        env,
      },
    };
  }

  async apply(host: HostRef, action: Exclude<Action, ArchiveAction>, signal?: AbortSignal): Promise<void> {
    const maxBytes = host.maxCommandBytes ?? this.settings.maxCommandBytes;
    actionCommands(action, LATEST, maxBytes); // validates every argument before any connection is touched
    await this.mutation(host, action.app, async () => {
      const commands = actionCommands(action, await this.version(host, signal), maxBytes);
      if (action.kind === "enableTls" && (await this.tlsActive(host, action.app, signal))) return;
      for (const command of commands) await this.mutate(host, command, signal);
    });
  }

  async transfer(host: HostRef, transfer: ArchiveTransfer, signal?: AbortSignal): Promise<void> {
    const { action } = transfer;
    const commandsFor = (version: DokkuVersion): Command[] => {
      if (!("source" in transfer)) return [backupCommand(action.app, action.storage, version)];
      const { wipe, extract } = restoreCommands(action.app, action.storage, version);
      return [wipe, extract];
    };
    commandsFor(LATEST); // validates every argument before any connection is touched
    await this.mutation(host, action.app, async () => {
      const commands = commandsFor(await this.version(host, signal));
      const io = "source" in transfer ? { stdin: transfer.source } : { stdout: transfer.sink };
      for (const [index, command] of commands.entries()) {
        // Only the last command (tar) reads or writes the archive; the wipe before it has no stdin.
        const last = index === commands.length - 1;
        const opts = { timeoutMs: this.settings.backupTimeoutMs, ...(last ? io : {}), ...(signal && { signal }) };
        const result = await this.exec(host, command, opts);
        if (result.exitCode !== 0) this.raise(host, command, result);
      }
    });
  }

  async runRaw(host: HostRef, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    return this.exec(host, { argv, subcommand: subcommandOf(argv) }, opts);
  }

  stats(host: HostRef): HostStats {
    const state = this.hosts.get(host.id);
    const pool = state?.runner instanceof SshPool ? state.runner : undefined;
    return { commands: state?.commands ?? 0, peakChannels: pool?.peakChannels ?? 0, connectionsOpened: pool?.connectionsOpened ?? 0 };
  }

  async close(): Promise<void> {
    const states = [...this.hosts.values()];
    this.hosts.clear();
    await Promise.all(states.map((state) => state.runner.close()));
  }

  private state(host: HostRef): HostState {
    const known = this.hosts.get(host.id);
    if (known && known.ref.sshUrl === host.sshUrl && known.ref.hostKey === host.hostKey && known.ref.maxCommandBytes === host.maxCommandBytes) return known;
    if (known) void known.runner.close();
    initHostMetrics(this.settings.metrics, host.name);
    const state: HostState = {
      ref: host,
      runner: this.runnerFor(host),
      limit: pLimit(this.settings.hostConcurrency),
      appLocks: known?.appLocks ?? new Map(),
      version: undefined,
      commands: 0,
    };
    this.hosts.set(host.id, state);
    return state;
  }

  /** `version` once per host; a failed probe is forgotten so the next call retries it. */
  private version(host: HostRef, signal?: AbortSignal): Promise<DokkuVersion> {
    const state = this.state(host);
    if (!state.version) {
      const probe = this.exec(host, observeCommands.version(), { ...(signal && { signal }) }).then((result) => {
        if (result.exitCode !== 0) throw this.commandError(host, observeCommands.version(), result, "retryable", "VersionProbeFailed");
        return parseVersion(result.stdout);
      });
      state.version = probe;
      probe.catch(() => {
        if (state.version === probe) state.version = undefined;
      });
    }
    return state.version;
  }

  private async tlsActive(host: HostRef, app: string, signal?: AbortSignal): Promise<boolean> {
    const result = await this.exec(host, observeCommands.tlsActive(app), { ...(signal && { signal }) });
    return result.exitCode === 0 && parseTlsActive(result.stdout);
  }

  /** Per-app lock first, then a host slot. */
  private async mutation(host: HostRef, app: string, fn: () => Promise<void>): Promise<void> {
    const state = this.state(host);
    const previous = state.appLocks.get(app) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    state.appLocks.set(app, tail);
    await previous;
    try {
      await state.limit(fn);
    } finally {
      release();
      if (state.appLocks.get(app) === tail) state.appLocks.delete(app);
    }
  }

  private async mutate(host: HostRef, command: Command, signal?: AbortSignal): Promise<void> {
    const result = await this.exec(host, command, { ...(signal && { signal }) });
    const verdict = classify(command.subcommand, result);
    if (verdict.outcome === "alreadyDone") {
      this.settings.logger.debug({ host: host.name, command: command.subcommand, reason: verdict.reason }, "dokku: already so");
    }
    if (verdict.outcome === "retryable" || verdict.outcome === "terminal") {
      this.settings.metrics.commandErrors.inc({ host: host.name, command: command.subcommand, reason: verdict.reason });
      throw this.commandError(host, command, result, verdict.outcome, verdict.reason);
    }
  }

  private requireOk(host: HostRef, command: Command, result: RunResult): void {
    if (result.exitCode !== 0) this.raise(host, command, result);
  }

  private raise(host: HostRef, command: Command, result: RunResult): never {
    const verdict = classify(command.subcommand, { ...result, exitCode: result.exitCode || 1 });
    const kind = verdict.outcome === "terminal" ? "terminal" : "retryable";
    const reason = verdict.outcome === "ok" ? "CommandFailed" : verdict.reason;
    this.settings.metrics.commandErrors.inc({ host: host.name, command: command.subcommand, reason });
    throw this.commandError(host, command, result, kind, reason);
  }

  private commandError(host: HostRef, command: Command, result: RunResult, kind: "retryable" | "terminal", reason: string): Error {
    const message = `${command.subcommand} on ${host.name} failed with exit ${result.exitCode} (${reason})${failureLine(command, result)}`;
    const error = kind === "terminal" ? new TerminalError(reason, message) : new DokkuCommandError(reason, message);
    return attachHidden(error, { argv: command.argv, exitCode: result.exitCode, stderr: result.stderr });
  }

  /** One command with metrics. Transport failures are counted here; answers by the caller. */
  private async exec(host: HostRef, command: Command, opts: RunOptions): Promise<RunResult> {
    const state = this.state(host);
    const labels = { host: host.name, command: command.subcommand };
    const stop = this.settings.metrics.commandSeconds.startTimer(labels);
    state.commands += 1;
    try {
      const result = await state.runner.run(command.argv, { timeoutMs: this.settings.commandTimeoutMs, ...opts });
      this.settings.metrics.hostUp.set({ host: host.name }, 1);
      return result;
    } catch (err) {
      const hostDown = (err instanceof SshError && err.hostDown) || err instanceof OutcomeUnknownError || reasonOf(err) === "HostKeyMismatch";
      if (hostDown) this.settings.metrics.hostUp.set({ host: host.name }, 0);
      this.settings.metrics.commandErrors.inc({ ...labels, reason: reasonOf(err) });
      if (err instanceof Error && !Object.hasOwn(err, "argv")) attachHidden(err, { argv: command.argv });
      throw err;
    } finally {
      stop();
    }
  }
}

interface TestSeams {
  readonly runnerFor: (host: HostRef) => CommandRunner;
}

/** The driver over a given runner factory (tests pass a FakeCommandRunner). */
export function createDokkuDriverWith(seams: TestSeams, options: Omit<DokkuDriverOptions, "privateKey">): DokkuDriver {
  return new DokkuDriverImpl(seams.runnerFor, {
    metrics: createDriverMetrics(options.registry),
    logger: options.logger ?? NOOP_LOGGER,
    hostConcurrency: positive("hostConcurrency", options.hostConcurrency, 4),
    commandTimeoutMs: positive("commandTimeoutMs", options.commandTimeoutMs, 120_000),
    backupTimeoutMs: positive("backupTimeoutMs", options.backupTimeoutMs, 30 * 60_000),
    maxCommandBytes: positive("maxCommandBytes", options.maxCommandBytes, MAX_COMMAND_BYTES),
  });
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isInteger(chosen) || chosen < 1) throw new Error(`createDokkuDriver: ${name} must be a positive integer, got ${String(value)}`);
  return chosen;
}

export function createDokkuDriver(options: DokkuDriverOptions): DokkuDriver {
  // Fail at wiring time, not on the first command: ssh2 reads OpenSSH and PEM (not PKCS#8 ed25519).
  if (utils.parseKey(options.privateKey) instanceof Error) {
    throw new Error("createDokkuDriver: privateKey cannot be parsed (use an OpenSSH-format private key without passphrase)");
  }
  const logger = options.logger ?? NOOP_LOGGER;
  const connections = positive("connectionsPerHost", options.connectionsPerHost, 2);
  const defaultTimeoutMs = positive("commandTimeoutMs", options.commandTimeoutMs, 120_000);
  const metrics = createDriverMetrics(options.registry);
  const runnerFor = (host: HostRef): CommandRunner =>
    new SshPool({
      host,
      privateKey: options.privateKey,
      logger,
      connections,
      channelsPerConnection: 8,
      defaultTimeoutMs,
      keepaliveIntervalMs: options.keepaliveIntervalMs ?? 10_000,
      readyTimeoutMs: Math.min(20_000, defaultTimeoutMs),
      maxCommandBytes: host.maxCommandBytes ?? options.maxCommandBytes ?? MAX_COMMAND_BYTES,
      onHostState: (up) => metrics.hostUp.set({ host: host.name }, up ? 1 : 0),
      ...(options.onHostKeyLearned && { onHostKeyLearned: options.onHostKeyLearned }),
    });
  return createDokkuDriverWith({ runnerFor }, options);
}
