/** `version` and the apps plugin (reference §7.1). */
import type { CommandDef, Ctx } from "./context.ts";
import { defaultVhost, getApp, goFlags, NAME_ERROR, NEW_NAME, readLine } from "./context.ts";
import { Fail,fail } from "./io.ts";
import type { Field } from "./report.ts";
import { parseReportArgs, printReport } from "./report.ts";
import type { AppState } from "./state.ts";
import { newApp } from "./state.ts";

const NO_APPS = "You haven't deployed any applications yet";

function appsList(ctx: Ctx, args: string[]): void {
  const f = goFlags("apps:list", args, ctx.feat.appsListJson ? { string: ["format"] } : {});
  const names = ctx.host.store.names();
  if (f.strings.get("format") === "json") {
    ctx.io.line(JSON.stringify(names));
    return;
  }
  ctx.io.info2Quiet("My Apps");
  if (names.length === 0) ctx.io.warn(NO_APPS);
  for (const n of names) ctx.io.line(n);
}

function appsCreate(ctx: Ctx, args: string[]): void {
  const f = goFlags("apps:create", args, {});
  const name = f.positional[0];
  if (name === undefined || name === "") throw fail("Please specify an app to run the command on");
  if (!NEW_NAME.test(name)) throw fail(NAME_ERROR);
  const { store } = ctx.host;
  if (store.apps.has(name)) throw fail("Name is already taken");
  const app = newApp(name, Math.floor(ctx.host.now() / 1000));
  ctx.io.info1Quiet(`Creating ${name}...`);
  const vhost = defaultVhost(ctx.host, name);
  if (vhost === undefined) {
    ctx.io.info1Quiet("Global server virtual host not set, disabling app vhost...");
    app.vhostEnabled = false;
  } else {
    ctx.io.info1Quiet("Creating new app virtual host file...");
    app.domains = [vhost];
  }
  store.apps.set(name, app);
  store.save();
}

async function appsDestroy(ctx: Ctx, args: string[]): Promise<void> {
  const f = goFlags("apps:destroy", args, { bool: ["force"] });
  const app = getApp(ctx, f.positional[0]);
  if (!ctx.flags.force && !f.bools.has("force")) await confirm(ctx, "app", app.name);
  ctx.io.info1(`Destroying ${app.name} (including all add-ons)`);
  ctx.io.info1("Cleaning up...");
  ctx.io.info1("Retiring old containers and images");
  await destroyApp(ctx, app);
}

/** Removes the app; storage directories, services and networks are kept. */
export async function destroyApp(ctx: Pick<Ctx, "host">, app: AppState): Promise<void> {
  ctx.host.store.apps.delete(app.name);
  ctx.host.store.save();
  await ctx.host.runtime.sync(app.name);
}

/** The destructive-action prompt; without a pty stdin is usually EOF. */
export async function confirm(ctx: Ctx, kind: string, name: string): Promise<void> {
  ctx.io.warn("WARNING: Potentially Destructive Action");
  ctx.io.warn(`This command will destroy ${kind} ${name}.`);
  ctx.io.warn(`To proceed, type "${name}"`);
  ctx.io.out("> ");
  const answer = await readLine(ctx.stdin);
  if (answer === undefined) throw fail("EOF");
  if (answer.trim() !== name) throw fail(`Confirmation did not match ${name}. Aborted.`);
}

function appFields(ctx: Ctx, app: AppState): Field[] {
  const fields: Field[] = [
    { flag: "--app-created-at", value: String(app.createdAt) },
    { flag: "--app-deploy-source", value: app.deploySource },
    { flag: "--app-deploy-source-metadata", value: app.image ?? "" },
    { flag: "--app-dir", value: `/home/dokku/${app.name}` },
    { flag: "--app-locked", value: String(app.lockFile || ctx.host.locks.isHeld(app.name)) },
  ];
  if (ctx.feat.appsAutocreation) fields.push({ flag: "--app-global-disable-autocreation", value: "" });
  return fields;
}

/** Shared by every Go `*:report`: one app, or every app in order (the first error stops it). */
export function reportCommand(type: string, fields: (ctx: Ctx, app: AppState) => Field[], dual: string | undefined): CommandDef {
  return {
    run(ctx, args) {
      const { rest, opts } = parseReportArgs(args);
      const names = rest.length > 0 ? [rest[0]] : ctx.host.store.names();
      if (names.length === 0) {
        ctx.io.warn(NO_APPS);
        return;
      }
      for (const name of names) {
        const app = getApp(ctx, name);
        const dualPrefix = ctx.feat.dualJsonKeys ? dual : undefined;
        printReport(ctx.io, { type, app: app.name, fields: fields(ctx, app), go: true, dualPrefix }, opts);
      }
    },
  };
}

function lock(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  app.lockFile = true;
  ctx.host.store.save();
  ctx.io.info1("Deploy lock created");
}

function locked(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  if (!app.lockFile && !ctx.host.locks.isHeld(app.name)) throw fail("Deploy lock does not exist");
  if (!ctx.io.quiet) ctx.io.line("Deploy lock exists");
}

function unlock(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  const hadControl = ctx.host.locks.releaseControl(app.name);
  if (!app.lockFile && !hadControl) throw fail("Unable to remove deploy lock");
  ctx.io.warn("A deploy may be in progress.");
  ctx.io.warn("Removing the app lock will not stop in progress deploys.");
  app.lockFile = false;
  ctx.host.store.save();
  ctx.io.info1("Deploy lock removed");
}

function rootOnly(): never {
  throw new Fail(1, ["This command must be run as root"]);
}

export const appsCommands: Record<string, CommandDef> = {
  version: { run: (ctx) => ctx.io.line(`dokku version ${ctx.version}`) },
  "apps:list": { run: appsList },
  "apps:exists": { run: (ctx, args) => void getApp(ctx, args[0]) },
  "apps:create": { run: appsCreate },
  "apps:destroy": { run: appsDestroy },
  "apps:report": reportCommand("app", appFields, "app-"),
  "apps:lock": { run: lock },
  "apps:locked": { run: locked },
  "apps:unlock": { run: unlock },
  "ssh-keys:add": { run: rootOnly },
  "ssh-keys:remove": { run: rootOnly },
  "plugin:install": { run: rootOnly },
  "plugin:update": { run: rootOnly },
};
