/**
 * The storage plugin (§7.6) over real directories, plus `storage:exec` (0.38+) and `run` (any
 * version) that run a real `tar`/`ls`/`cat` with container paths mapped onto those directories,
 * so archives on stdout are real gzip streams, byte for byte.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";

import { confirm } from "./cmd-apps.ts";
import type { CommandDef, Ctx } from "./context.ts";
import { getApp, goFlags } from "./context.ts";
import { fail } from "./io.ts";
import type { Field } from "./report.ts";
import { parseReportArgs, printReport } from "./report.ts";
import type { AppState } from "./state.ts";
import { realPath, STORAGE_ROOT } from "./state.ts";

const DIR_NAME = /^[A-Za-z0-9_-]+$/;
const CHOWN: Record<string, string | null> = { herokuish: "32767", heroku: "1000", paketo: "2000", root: "0", false: null };

function ensureDirectory(ctx: Ctx, args: string[]): void {
  const f = goFlags("storage:ensure-directory", args, { string: ["chown"] });
  const name = f.positional[0] ?? "";
  if (!DIR_NAME.test(name)) throw fail("Directory can only contain the following set of characters: [A-Za-z0-9_-]");
  const chown = f.strings.get("chown") ?? "herokuish";
  const uid = /^\d+$/.test(chown) ? chown : CHOWN[chown];
  if (uid === undefined) throw fail("Unsupported chown permissions");
  mkdirSync(realPath(ctx.host.root, `${STORAGE_ROOT}/${name}`), { recursive: true });
  if (ctx.feat.storageEntries) ctx.host.store.storageEntries.add(name);
  ctx.host.store.save();
  ctx.io.info1(`Ensuring ${STORAGE_ROOT}/${name} exists`);
  if (uid !== null) ctx.io.verbose(`Setting directory ownership to ${uid}:${uid}`);
  ctx.io.verbose("Directory ready for mounting");
}

function storageCreate(ctx: Ctx, args: string[]): void {
  const f = goFlags("storage:create", args, { string: ["chown", "mode"] });
  const name = f.positional[0] ?? "";
  if (!/^[a-z0-9]([a-z0-9-]{0,43}[a-z0-9])?$/.test(name)) throw fail("Invalid storage entry name");
  const { store } = ctx.host;
  if (store.storageEntries.has(name)) return ctx.io.info1(`Storage entry ${name} already exists, leaving in place`);
  mkdirSync(realPath(ctx.host.root, f.positional[1] ?? `${STORAGE_ROOT}/${name}`), { recursive: true });
  store.storageEntries.add(name);
  store.save();
  ctx.io.info1(`Storage entry ${name} created`);
}

const MOUNT = /^(\/[^:]*|[a-zA-Z0-9][a-zA-Z0-9_.-]*):(\/[^:]*)(:[^:]+)?$/;

function storageMount(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  const spec = args[1] ?? "";
  const dirIdx = args.indexOf("--container-dir");
  if (ctx.feat.storageEntries && dirIdx !== -1 && !spec.includes(":")) {
    const target = `${STORAGE_ROOT}/${spec}:${args[dirIdx + 1] ?? ""}`;
    const existing = app.mounts.findIndex((m) => m.startsWith(`${STORAGE_ROOT}/${spec}:`));
    if (existing === -1) app.mounts.push(target);
    else app.mounts[existing] = target;
    ctx.host.store.save();
    return ctx.io.info1(`Storage entry ${spec} ${existing === -1 ? "mounted" : "updated"} at ${args[dirIdx + 1] ?? ""} on ${app.name}`);
  }
  const m = MOUNT.exec(spec);
  if (m === null) throw fail("Storage path must be two valid paths divided by colon.");
  if (!(m[1] as string).startsWith("/") && (m[1] as string).length < 2) throw fail("Volume name must be two characters or more");
  if (app.mounts.includes(spec)) throw fail("Mount path already exists.");
  app.mounts.push(spec);
  ctx.host.store.save();
}

function storageUnmount(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  const spec = args[1] ?? "";
  if (!MOUNT.test(spec)) throw fail("Storage path must be two valid paths divided by colon.");
  if (!app.mounts.includes(spec)) throw fail("Mount path does not exist.");
  app.mounts = app.mounts.filter((x) => x !== spec);
  ctx.host.store.save();
}

interface MountView {
  host: string;
  container: string;
  opts: string;
}

function mountsOf(app: AppState): MountView[] {
  return app.mounts.map((m) => {
    const [host = "", container = "", opts = ""] = m.split(":");
    return { host, container, opts };
  });
}

/** Entry name of a mount: the storage directory name, else `legacy-<hash>`. */
function entryName(m: MountView): string {
  if (m.host.startsWith(`${STORAGE_ROOT}/`)) return m.host.slice(STORAGE_ROOT.length + 1);
  return `legacy-${createHash("sha256").update(m.host).digest("hex").slice(0, 10)}`;
}

function storageList(ctx: Ctx, args: string[]): void {
  const f = goFlags("storage:list", args, { string: ["format"] });
  const app = getApp(ctx, f.positional[0]);
  const format = f.strings.get("format");
  const mounts = mountsOf(app);
  const text = (m: MountView): string => `${m.host}:${m.container}${m.opts ? `:${m.opts}` : ""}`;
  if (format === "json") {
    if (ctx.feat.storageEntries) {
      const rows = mounts.map((m) => ({ entry_name: entryName(m), host_path: m.host, container_path: m.container, ...(m.opts ? { volume_options: m.opts } : {}) }));
      return ctx.io.line(JSON.stringify(rows));
    }
    const rows = mounts.map((m) => ({ host_path: m.host, container_path: m.container, volume_options: m.opts }));
    return ctx.io.line(JSON.stringify(rows, null, 2));
  }
  if (format !== undefined && format !== "text") throw fail(`Invalid --format value specified`);
  const bare = ctx.io.quiet || (!ctx.feat.storageEntries && format === undefined);
  if (!bare) ctx.io.info1(`${app.name} volume bind-mounts:`);
  for (const m of mounts) ctx.io.line(bare ? text(m) : `       ${text(m)}`);
}

function storageReport(ctx: Ctx, args: string[]): void {
  const { rest, opts } = parseReportArgs(args);
  const names = rest.length > 0 ? [rest[0]] : ctx.host.store.names();
  for (const name of names) {
    const app = getApp(ctx, name);
    const vs = app.mounts.map((m) => `-v ${m}`).join(" ");
    const fields: Field[] = [
      { flag: "--storage-build-mounts", value: "" },
      { flag: "--storage-deploy-mounts", value: vs },
      { flag: "--storage-run-mounts", value: vs },
    ];
    const go = ctx.feat.storageEntries;
    printReport(ctx.io, { type: "storage", app: app.name, fields, go, dualPrefix: go && ctx.feat.dualJsonKeys ? "storage-" : undefined }, opts);
  }
}

async function storageDestroy(ctx: Ctx, args: string[]): Promise<void> {
  const f = goFlags("storage:destroy", args, { bool: ["force", "destroy-host-dir"] });
  const name = f.positional[0] ?? "";
  if (!ctx.host.store.storageEntries.has(name)) throw fail(`Storage entry ${name} does not exist`);
  if (!ctx.flags.force && !f.bools.has("force")) await confirm(ctx, "storage entry", name);
  ctx.host.store.storageEntries.delete(name);
  if (f.bools.has("destroy-host-dir")) rmSync(realPath(ctx.host.root, `${STORAGE_ROOT}/${name}`), { recursive: true, force: true });
  ctx.host.store.save();
  ctx.io.info1(`Storage entry ${name} destroyed`);
}

const ALLOWED = new Set(["tar", "find", "ls", "cat", "du", "true"]);

/** Runs `argv` with container paths (`/data/...`) mapped to real directories; streams stdio. */
function runMapped(ctx: Ctx, argv: string[], maps: [string, string][]): Promise<number> {
  const cmd = argv[0] ?? "";
  if (!ALLOWED.has(cmd)) {
    ctx.io.err(`docker: Error response from daemon: failed to create task for container: exec: "${cmd}": executable file not found in $PATH: unknown.\n`);
    return Promise.resolve(127);
  }
  const mapArg = (a: string): string => {
    for (const [from, to] of maps) if (a === from || a.startsWith(`${from}/`)) return to + a.slice(from.length);
    return a;
  };
  return new Promise((resolve) => {
    const child = spawn(cmd, argv.slice(1).map(mapArg), { stdio: ["pipe", "pipe", "pipe"] });
    child.stdout.on("data", (b: Buffer) => ctx.io.out(b));
    child.stderr.on("data", (b: Buffer) => ctx.io.err(b));
    child.stdin.on("error", () => undefined);
    ctx.stdin.pipe(child.stdin);
    child.on("error", () => resolve(127));
    child.on("close", (code) => {
      ctx.stdin.unpipe(child.stdin);
      resolve(code ?? 1);
    });
  });
}

async function storageExec(ctx: Ctx, args: string[]): Promise<number> {
  const sep = args.indexOf("--");
  const head = sep === -1 ? args : args.slice(0, sep);
  const f = goFlags("storage:exec", head, { string: ["image", "as-user"] });
  const name = f.positional[0] ?? "";
  if (!ctx.host.store.storageEntries.has(name)) throw fail(`Storage entry ${name} does not exist`);
  const cmd = sep === -1 ? f.positional.slice(1) : args.slice(sep + 1);
  if (cmd.length === 0) throw fail("No command specified");
  await ctx.work();
  return runMapped(ctx, cmd, [["/data", realPath(ctx.host.root, `${STORAGE_ROOT}/${name}`)]]);
}

/** `run <app> cmd…`: a one-off container with the app's mounts. */
async function run(ctx: Ctx, args: string[]): Promise<number> {
  const app = getApp(ctx, args[0]);
  if (!app.deployed) throw fail(`App ${app.name} has not been deployed`);
  await ctx.work();
  const maps = mountsOf(app).map((m): [string, string] => [m.container, realPath(ctx.host.root, m.host)]);
  return runMapped(ctx, args.slice(1), maps);
}

export const storageCommands: Record<string, CommandDef> = {
  "storage:ensure-directory": { run: ensureDirectory },
  "storage:create": { run: storageCreate, since: "0.38.0" },
  "storage:mount": { run: storageMount },
  "storage:unmount": { run: storageUnmount },
  "storage:list": { run: storageList },
  "storage:report": { run: storageReport },
  "storage:destroy": { run: storageDestroy, since: "0.38.0" },
  "storage:exec": { run: storageExec, since: "0.38.0", deploy: true },
  run: { run, deploy: true },
};
