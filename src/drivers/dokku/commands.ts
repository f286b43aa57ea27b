/**
 * Pure: actions → the argv words sent to a Dokku host, and argv → the command string.
 *
 * How a word survives the trip (reference dokku-cli.md §3): the forced command re-splits
 * `$SSH_ORIGINAL_COMMAND` by one of three rules (git* words: whitespace only, quotes literal;
 * 0.34+ others: xargs quote removal with echo quirks; before 0.34: whitespace only). Instead of
 * quoting for one rule, every word we send is restricted to a character set on which all three
 * rules agree: no whitespace, no quote, no backslash, no glob character, not an echo option.
 * Free-form data (config values) only ever travels base64-encoded (`config:set --encoded`).
 * Anything else is refused with a TerminalError before a connection is touched.
 */
import { TerminalError } from "../../errors.ts";
import type { Action, ArchiveAction, ResourceLimits, StorageSpec } from "../../reconciler/types.ts";
import { type DokkuVersion, versionAtLeast } from "./version.ts";

/**
 * Real Dokku behind OpenSSH: Linux MAX_ARG_STRLEN (131072) bounds `SSH_ORIGINAL_COMMAND=<cmd>`;
 * keep a margin below it. A host whose SSH server takes smaller packets (the embedded sandbox:
 * SANDBOX_MAX_COMMAND_BYTES) carries its own limit on its HostRef (`dokku_hosts.max_command_bytes`).
 */
export const MAX_COMMAND_BYTES = 130_000;
/** Where `storage:ensure-directory` creates entries (reference §7.6). */
export const STORAGE_ROOT = "/var/lib/dokku/data/storage";

/** Words every split rule leaves unchanged (reference §3.1, §3.2). */
const SAFE_WORD = /^[A-Za-z0-9._/:@+=,%-]+$/;
/** Words GNU echo (xargs) eats or rewrites, and flag words Dokku's parse_args honours anywhere. */
const REFUSED_WORDS = /^(-[neE]+|--help(=.*)?|--version|--quiet|--trace|--force|--app)$/;

export const APP_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const STORAGE_ENTRY = /^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$/;
export const MOUNT_PATH = /^\/[A-Za-z0-9._/-]*$/;
export const DOMAIN = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;
/** The git:* family is split on whitespace with quotes kept: only this charset is safe there. */
export const IMAGE = /^[A-Za-z0-9._/:@+-]+$/;
export const CONFIG_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** One command to send: the argv words, and the Dokku subcommand used as a metric label. */
export interface Command {
  readonly argv: readonly string[];
  readonly subcommand: string;
}

function refuse(reason: string, message: string): never {
  throw new TerminalError(reason, message);
}

export function validateAppName(app: string): string {
  if (!APP_NAME.test(app)) refuse("InvalidAppName", `app name ${JSON.stringify(app)} must match ${APP_NAME.source}`);
  return app;
}

function validateStorage(storage: StorageSpec): StorageSpec {
  if (!STORAGE_ENTRY.test(storage.entry)) {
    refuse("InvalidStorage", `storage entry ${JSON.stringify(storage.entry)} must match ${STORAGE_ENTRY.source}`);
  }
  const segments = storage.mountPath.split("/");
  if (!MOUNT_PATH.test(storage.mountPath) || segments.includes("..") || storage.mountPath === "/") {
    refuse("InvalidStorage", `mount path ${JSON.stringify(storage.mountPath)} must be an absolute path of [A-Za-z0-9._/-]`);
  }
  return storage;
}

function validateDomain(domain: string): string {
  if (!DOMAIN.test(domain)) refuse("InvalidDomain", `domain ${JSON.stringify(domain)} is not a valid lower-case host name`);
  return domain;
}

function validateImage(image: string): string {
  if (!IMAGE.test(image) || image.startsWith("-")) {
    refuse("InvalidImage", `image ${JSON.stringify(image)} must match ${IMAGE.source} (git:* arguments are split on whitespace)`);
  }
  return image;
}

/** The subcommand is the first word that is not a global flag. */
export function subcommandOf(argv: readonly string[]): string {
  return argv.find((word) => !word.startsWith("--")) ?? "unknown";
}

function command(...argv: string[]): Command {
  return { argv, subcommand: subcommandOf(argv) };
}

/**
 * Renders argv as the string sent over SSH. Throws TerminalError if any word could be altered by
 * Dokku's re-splitting, or the command could exceed the kernel's single-argument limit.
 * Global flags (leading `--quiet`, `--force`) are literal words we put there ourselves.
 */
export function renderCommand(argv: readonly string[], maxBytes = MAX_COMMAND_BYTES): string {
  const first = argv.findIndex((word) => !word.startsWith("--"));
  argv.forEach((word, index) => {
    const isGlobalFlag = index < first && (word === "--quiet" || word === "--force");
    if (!SAFE_WORD.test(word) || (!isGlobalFlag && REFUSED_WORDS.test(word))) {
      refuse("UnsafeArgument", `argument ${index} of ${subcommandOf(argv)} cannot be sent safely over Dokku's SSH re-splitting`);
    }
  });
  const line = argv.join(" ");
  if (Buffer.byteLength(line) > maxBytes) {
    refuse("CommandTooLong", `${subcommandOf(argv)} command is ${Buffer.byteLength(line)} bytes, over the host's ${maxBytes}-byte command limit (dokku_hosts.max_command_bytes)`);
  }
  return line;
}

/**
 * `config:set --encoded --no-restart` commands for `env`, packed greedily under the size limit.
 * Values never appear in messages. A single pair that cannot fit is refused before anything runs.
 */
export function configSetCommands(app: string, env: Readonly<Record<string, string>>, maxBytes = MAX_COMMAND_BYTES): Command[] {
  validateAppName(app);
  const prefix = ["--quiet", "config:set", "--encoded", "--no-restart", app];
  const budget = maxBytes - Buffer.byteLength(prefix.join(" "));
  const batches: string[][] = [];
  let current: string[] = [];
  let size = 0;
  for (const key of Object.keys(env).sort()) {
    if (!CONFIG_KEY.test(key)) refuse("InvalidConfigKey", `config key ${JSON.stringify(key)} must match ${CONFIG_KEY.source}`);
    const pair = `${key}=${Buffer.from(env[key] ?? "", "utf8").toString("base64")}`;
    const cost = pair.length + 1;
    if (cost > budget) {
      refuse(
        "ConfigValueTooLarge",
        `config value of ${key} cannot be sent: ${pair.length} bytes encoded, and the host's ${maxBytes}-byte command limit (dokku_hosts.max_command_bytes) leaves ${budget - 1} for one pair`,
      );
    }
    if (size + cost > budget) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(pair);
    size += cost;
  }
  if (current.length > 0) batches.push(current);
  return batches.map((pairs) => command(...prefix, ...pairs));
}

function formatCpus(cpus: number): string {
  if (!Number.isFinite(cpus) || cpus <= 0 || cpus > 1024) refuse("InvalidResources", `cpu limit ${cpus} must be in (0, 1024]`);
  return String(Math.round(cpus * 1000) / 1000);
}

function formatMemory(memoryMb: number): string {
  if (!Number.isInteger(memoryMb) || memoryMb < 4 || memoryMb > 4_194_304) {
    refuse("InvalidResources", `memory limit ${memoryMb} MB must be an integer in [4, 4194304]`);
  }
  return `${memoryMb}m`;
}

export function resourceLimitCommand(app: string, resources: ResourceLimits): Command {
  return command("resource:limit", "--memory", formatMemory(resources.memoryMb), "--cpu", formatCpus(resources.cpus), validateAppName(app));
}

export function storageHostPath(entry: string): string {
  return `${STORAGE_ROOT}/${entry}`;
}

/** The commands of one mutating action, in order. Validates everything before returning. */
export function actionCommands(action: Exclude<Action, ArchiveAction>, version: DokkuVersion, maxBytes = MAX_COMMAND_BYTES): Command[] {
  const app = validateAppName(action.app);
  switch (action.kind) {
    case "createApp":
      return [command("apps:create", app)];
    case "ensureStorage": {
      const { entry, mountPath } = validateStorage(action.storage);
      return [command("storage:ensure-directory", entry), command("storage:mount", app, `${storageHostPath(entry)}:${mountPath}`)];
    }
    case "setConfig":
      return configSetCommands(app, action.env, maxBytes);
    case "setResources":
      return [resourceLimitCommand(app, action.resources)];
    case "setDomains":
      return action.domains.length === 0
        ? [command("domains:clear", app)]
        : [command("domains:set", app, ...action.domains.map(validateDomain))];
    case "deployImage":
      return [command("git:from-image", app, validateImage(action.image))];
    case "enableTls":
      return [command("letsencrypt:enable", app)];
    case "start":
      return [command("ps:start", app)];
    case "stop":
      return [command("ps:stop", app)];
    case "restart":
      return [command("ps:restart", app)];
    case "destroyApp":
      return [command("--force", "apps:destroy", app)];
    case "destroyStorage":
      return destroyStorageCommands(app, validateStorage(action.storage), version);
  }
}

/**
 * 0.38+ has storage entries (`storage:destroy`, `--destroy-host-dir` from 0.38.27). Earlier
 * versions have no way for the dokku user to delete a host directory: we only unmount it.
 */
function destroyStorageCommands(app: string, storage: StorageSpec, version: DokkuVersion): Command[] {
  const unmount = command("storage:unmount", app, `${storageHostPath(storage.entry)}:${storage.mountPath}`);
  if (!versionAtLeast(version, 0, 38, 0)) return [unmount];
  const destroy = versionAtLeast(version, 0, 38, 27)
    ? command("--force", "storage:destroy", storage.entry, "--destroy-host-dir")
    : command("--force", "storage:destroy", storage.entry);
  return [unmount, destroy];
}

/** A tar.gz of the entry on stdout: `storage:exec` on 0.38+, a one-off `run` container before. */
export function backupCommand(app: string, storage: StorageSpec, version: DokkuVersion): Command {
  validateAppName(app);
  const { entry, mountPath } = validateStorage(storage);
  return versionAtLeast(version, 0, 38, 0)
    ? command("storage:exec", entry, "--", "tar", "-C", "/data", "-czf", "-", ".")
    : command("run", app, "tar", "-C", mountPath, "-czf", "-", ".");
}

/**
 * Replacing an entry's contents with a tar.gz on stdin: empty it, then extract (reference §11).
 * Same split as backupCommand: `storage:exec` (alpine) on 0.38+, a one-off `run` container before.
 * Both commands together are idempotent: redone with the same archive, the contents are the same.
 */
export function restoreCommands(app: string, storage: StorageSpec, version: DokkuVersion): { wipe: Command; extract: Command } {
  validateAppName(app);
  const { entry, mountPath } = validateStorage(storage);
  if (versionAtLeast(version, 0, 38, 0)) {
    return {
      wipe: command("storage:exec", entry, "--", "find", "/data", "-mindepth", "1", "-delete"),
      extract: command("storage:exec", entry, "--", "tar", "-C", "/data", "-xzf", "-"),
    };
  }
  return {
    wipe: command("run", app, "find", mountPath, "-mindepth", "1", "-delete"),
    extract: command("run", app, "tar", "-C", mountPath, "-xzf", "-"),
  };
}

/** Read-only commands of a deep observe. */
export const observeCommands = {
  version: (): Command => command("version"),
  psReportAll: (): Command => command("ps:report"),
  psReport: (app: string): Command => command("ps:report", validateAppName(app)),
  /** The whole environment, byte-exact (reference §7.3); MINDROOM_SPEC_HASH is one of its keys. */
  configExport: (app: string): Command => command("config:export", "--format", "json", validateAppName(app)),
  domains: (app: string): Command => command("domains:report", validateAppName(app)),
  storage: (app: string): Command => command("storage:list", validateAppName(app), "--format", "json"),
  resources: (app: string): Command => command("resource:report", validateAppName(app)),
  appReport: (app: string): Command => command("apps:report", validateAppName(app)),
  tlsActive: (app: string): Command => command("letsencrypt:active", validateAppName(app)),
};
