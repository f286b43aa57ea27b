/**
 * What a command handler sees: the parsed invocation, its output, the host, and helpers shared by
 * the plugins (app lookup with Dokku's name rules, Go pflag parsing, the release/deploy path).
 */
import type { Readable } from "node:stream";

import type { Io } from "./io.ts";
import { appMissing, Fail, fail } from "./io.ts";
import type { GlobalFlags } from "./split.ts";
import type { AppState, Store } from "./state.ts";
import { newCid } from "./state.ts";
import type { Features } from "./version.ts";

/** Per-app deploy lock (the flock of reference §8); the control API may hold it too. */
export class DeployLocks {
  private readonly held = new Map<string, "command" | "control">();

  isHeld(app: string): boolean {
    return this.held.has(app);
  }
  /** Takes the lock or fails like `acquire_app_deploy_lock` (exit 1, two lines). */
  acquire(app: string, by: "command" | "control" = "command"): () => void {
    if (this.held.has(app)) {
      throw new Fail(1, [
        `${app} currently has a deploy lock in place. Exiting...`,
        "Run 'apps:unlock' to release the existing deploy lock",
      ]);
    }
    this.held.set(app, by);
    return () => {
      this.held.delete(app);
    };
  }
  /** `apps:unlock` / control release: drops a lock held by the control API only. */
  releaseControl(app: string): boolean {
    if (this.held.get(app) !== "control") return false;
    this.held.delete(app);
    return true;
  }
}

/** HTTP side of the host: listeners follow app state after every change. */
export interface AppRuntime {
  sync(app: string): Promise<void>;
}

export interface Host {
  readonly store: Store;
  /** Real directory standing for `/` paths of the host (storage lives under `<root>/storage`). */
  readonly root: string;
  readonly globalVhost: string | null;
  readonly letsencryptEmail: string | null;
  readonly locks: DeployLocks;
  readonly runtime: AppRuntime;
  /** Images "on the host" (pulled once); in memory only. */
  readonly images: Set<string>;
  now(): number;
}

export interface Ctx {
  readonly version: string;
  readonly feat: Features;
  readonly flags: GlobalFlags;
  readonly io: Io;
  readonly host: Host;
  readonly stdin: Readable;
  /** The command's simulated duration (latency fault); deploy handlers call it under the lock. */
  work(): Promise<void>;
}

export const NEW_NAME = /^[a-z0-9][a-z0-9.-]*$/;
const OLD_NAME = /^[a-z0-9][a-z0-9._-]*$/;
export const NAME_ERROR =
  "App name must begin with lowercase alphanumeric character, and may only contain lowercase alphanumerics, dots, and hyphens";

/** `VerifyAppName`: empty → 1, fails both patterns → 1, missing → 20. */
export function getApp(ctx: Ctx, name: string | undefined): AppState {
  if (name === undefined || name === "") throw fail("Please specify an app to run the command on");
  if (!NEW_NAME.test(name) && !OLD_NAME.test(name)) throw fail(NAME_ERROR);
  const app = ctx.host.store.apps.get(name);
  if (app === undefined) throw appMissing(name);
  return app;
}

export interface FlagSpec {
  bool?: string[];
  string?: string[];
}

export interface ParsedFlags {
  bools: Set<string>;
  strings: Map<string, string>;
  positional: string[];
}

/** pflag with ExitOnError: flags anywhere, `--` ends them, unknown ones exit 2 with usage. */
export function goFlags(cmd: string, args: string[], spec: FlagSpec): ParsedFlags {
  const out: ParsedFlags = { bools: new Set(), strings: new Map(), positional: [] };
  const bools = new Set(spec.bool ?? []);
  const strings = new Set(spec.string ?? []);
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--") {
      out.positional.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      out.positional.push(a);
      continue;
    }
    const [name, inline] = splitFlag(a);
    if (bools.has(name)) out.bools.add(name);
    else if (strings.has(name)) {
      const value = inline ?? args[++i];
      if (value === undefined) throw usage(cmd, spec, `flag needs an argument: --${name}`);
      out.strings.set(name, value);
    } else throw usage(cmd, spec, a.startsWith("--") ? `unknown flag: --${name}` : `unknown shorthand flag: '${a.charAt(1)}' in ${a}`);
  }
  return out;
}

function splitFlag(a: string): [string, string | undefined] {
  const body = a.replace(/^--?/, "");
  const eq = body.indexOf("=");
  return eq === -1 ? [body, undefined] : [body.slice(0, eq), body.slice(eq + 1)];
}

function usage(cmd: string, spec: FlagSpec, first: string): Fail {
  const lines = [
    ...(spec.bool ?? []).map((f) => `      --${f}`),
    ...(spec.string ?? []).map((f) => `      --${f} string`),
  ];
  return new Fail(2, [], `${first}\nUsage of ${cmd}:\n${lines.join("\n")}${lines.length ? "\n" : ""}`);
}

/** Default vhost of `get_default_vhosts`: a name with a dot is itself the hostname. */
export function defaultVhost(host: Host, app: string): string | undefined {
  if (app.includes(".")) return app;
  return host.globalVhost === null ? undefined : `${app}.${host.globalVhost}`;
}

/** Release of the current image: new containers, `restore=true`, listeners follow. */
export async function release(ctx: Ctx, app: AppState): Promise<void> {
  const { io } = ctx;
  io.info1(`Releasing ${app.name}...`);
  io.info1(`Deploying ${app.name} via the docker-local scheduler...`);
  io.info1("Deploying web (count=1)");
  io.verbose("Attempting pre-flight checks (web.1)");
  app.containers = [{ proc: "web", index: 1, state: "running", cid: newCid() }];
  app.deployed = true;
  app.restore = true;
  ctx.host.store.save();
  await ctx.host.runtime.sync(app.name);
  io.info2("Application deployed:");
  const scheme = app.tls.enabled ? "https" : "http";
  for (const d of app.vhostEnabled ? app.domains : []) io.verbose(`${scheme}://${d}`);
  io.line("");
}

/** Stops containers (kept), `restore=false` unless `crash` (a crash keeps restore=true). */
export async function stopContainers(ctx: { host: Host }, app: AppState, crash = false): Promise<void> {
  for (const c of app.containers) c.state = "exited";
  if (!crash) app.restore = false;
  ctx.host.store.save();
  await ctx.host.runtime.sync(app.name);
}

/** A plugin subcommand. `deploy` handlers call `ctx.work()` themselves, under the deploy lock. */
export interface CommandDef {
  run(ctx: Ctx, args: string[]): Promise<number | void> | number | void;
  deploy?: boolean;
  /** 0.38+ build capture: stderr goes to stdout for the whole command. */
  capture?: boolean;
  /** Oldest version that has the command (older: "is not a dokku command"). */
  since?: string;
}

/** Reads one line (without the newline) or what is left at EOF; undefined on EOF with nothing. */
export function readLine(stdin: Readable): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buf = "";
    const done = (v: string | undefined): void => {
      stdin.off("data", onData);
      stdin.off("end", onEnd);
      stdin.off("close", onEnd);
      resolve(v);
    };
    const onData = (chunk: Buffer | string): void => {
      buf += chunk.toString();
      const nl = buf.indexOf("\n");
      if (nl !== -1) done(buf.slice(0, nl));
    };
    const onEnd = (): void => done(buf === "" ? undefined : buf);
    stdin.on("data", onData);
    stdin.on("end", onEnd);
    stdin.on("close", onEnd);
  });
}
