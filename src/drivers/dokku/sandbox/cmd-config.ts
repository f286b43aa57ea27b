/** The config plugin (reference §7.3). Values are bytes; outputs write them untouched. */
import type { CommandDef, Ctx } from "./context.ts";
import { getApp, goFlags, release } from "./context.ts";
import { fail } from "./io.ts";
import { goJsonObject, goJsonString } from "./report.ts";
import type { AppState } from "./state.ts";
import { byteOrder } from "./state.ts";

const KEY = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Go base64.StdEncoding strictness: returns the offset of the first bad byte, or -1. */
export function base64Error(s: string): number {
  const m = /[^A-Za-z0-9+/=]/.exec(s);
  if (m) return m.index;
  const pad = s.indexOf("=");
  if (pad !== -1 && !/^={1,2}$/.test(s.slice(pad))) return pad;
  if (s.length % 4 !== 0) return s.length - (s.length % 4);
  if (pad !== -1 && pad < s.length - 2) return pad;
  return -1;
}

function decodePairs(pairs: string[], encoded: boolean): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq === -1) throw fail(`Invalid env pair: ${pair}`);
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    if (!KEY.test(key)) throw fail(`Invalid key name: '${key}'`);
    if (encoded) {
      const bad = base64Error(raw);
      if (bad !== -1) throw fail(`illegal base64 data at input byte ${bad} for key '${key}'`);
    }
    out.set(key, encoded ? Buffer.from(raw, "base64") : Buffer.from(raw));
  }
  return out;
}

/** columnize with `key:` + two-space glue, the way `prettyPrintEnvEntries` prints. */
function columnize(prefix: string, env: [string, Buffer][]): string {
  const width = Math.max(0, ...env.map(([k]) => k.length + 1));
  return env.map(([k, v]) => `${prefix}${`${k}:`.padEnd(width)}  ${v.toString()}`).join("\n");
}

function sortedEnv(app: AppState): [string, Buffer][] {
  return [...app.env].sort((a, b) => byteOrder(a[0], b[0]));
}

/** `config:set`/`unset` restart: only deployed apps with restore != false, unless --no-restart. */
async function maybeRestart(ctx: Ctx, app: AppState, noRestart: boolean): Promise<void> {
  if (noRestart || !app.deployed || !app.restore) return;
  if (ctx.feat.buildCapture) ctx.io.merged = true;
  ctx.io.info1(`Restarting app ${app.name}`);
  await release(ctx, app);
}

async function configSet(ctx: Ctx, args: string[]): Promise<void> {
  const f = goFlags("config:set", args, { bool: ["encoded", "no-restart"] });
  const app = getApp(ctx, f.positional[0]);
  const pairs = f.positional.slice(1);
  if (pairs.length === 0) throw fail("At least one env pair must be given");
  const updates = decodePairs(pairs, f.bools.has("encoded"));
  for (const [k, v] of updates) app.env.set(k, v);
  ctx.host.store.save();
  if (!ctx.io.quiet) {
    ctx.io.info1("Setting config vars");
    ctx.io.line(columnize("       ", [...updates].sort((a, b) => byteOrder(a[0], b[0]))));
  }
  await maybeRestart(ctx, app, f.bools.has("no-restart"));
}

async function configUnset(ctx: Ctx, args: string[]): Promise<void> {
  const f = goFlags("config:unset", args, { bool: ["no-restart"] });
  const app = getApp(ctx, f.positional[0]);
  const keys = f.positional.slice(1);
  if (keys.length === 0) throw fail("At least one key must be given");
  let changed = false;
  for (const k of keys) {
    if (app.env.delete(k)) {
      changed = true;
      ctx.io.info1(`Unsetting ${k}`);
    } else ctx.io.info1(`Skipping ${k}, it is not set in the environment`);
  }
  ctx.host.store.save();
  if (changed) await maybeRestart(ctx, app, f.bools.has("no-restart"));
}

async function configClear(ctx: Ctx, args: string[]): Promise<void> {
  const f = goFlags("config:clear", args, { bool: ["no-restart"] });
  const app = getApp(ctx, f.positional[0]);
  const keys = sortedEnv(app).map(([k]) => k);
  for (const k of keys) ctx.io.info1(`Unsetting ${k}`);
  app.env.clear();
  ctx.host.store.save();
  if (keys.length > 0) await maybeRestart(ctx, app, f.bools.has("no-restart"));
}

function configGet(ctx: Ctx, args: string[]): number | void {
  const f = goFlags("config:get", args, { bool: ["quoted"] });
  const app = getApp(ctx, f.positional[0]);
  const key = f.positional[1];
  if (key === undefined) throw fail("Expected: key");
  const v = app.env.get(key);
  if (v === undefined) return 1;
  if (f.bools.has("quoted")) ctx.io.out(`'${v.toString().replace(/'/g, "'\\''")}'\n`);
  else ctx.io.out(Buffer.concat([v, Buffer.from("\n")]));
}

const sq = (v: Buffer): string => `'${v.toString().replace(/'/g, "'\\''")}'`;

/** The export formats; `undefined` for an unknown one. */
export function exportEnv(format: string, env: [string, Buffer][]): string | undefined {
  switch (format) {
    case "exports":
      return env.map(([k, v]) => `export ${k}=${sq(v)}\n`).join("");
    case "envfile":
      return env.map(([k, v]) => `${k}=${JSON.stringify(v.toString())}\n`).join("");
    case "docker-args":
      return `${env.map(([k, v]) => `--env=${k}=${sq(v)}`).join(" ")}\n`;
    case "docker-args-keys":
      return `${env.map(([k]) => `--env=${k}`).join(" ")}\n`;
    case "pack-keys":
      return `${env.map(([k]) => `--env ${k}`).join(" ")}\n`;
    case "shell":
      return env.map(([k, v]) => `${k}=${sq(v)} `).join("");
    case "json":
      return `${goJsonObject(env.map(([k, v]) => [k, v.toString()]))}\n`;
    case "json-list":
      if (env.length === 0) return "null\n";
      return `[${env.map(([k, v]) => `{"name":${goJsonString(k)},"value":${goJsonString(v.toString())}}`).join(",")}]\n`;
    case "pretty":
      return `${columnize("", env)}\n`;
    default:
      return undefined;
  }
}

function configExport(ctx: Ctx, args: string[]): void {
  const f = goFlags("config:export", args, { bool: ["merged"], string: ["format"] });
  const app = getApp(ctx, f.positional[0]);
  const format = f.strings.get("format") ?? "exports";
  const text = exportEnv(format, sortedEnv(app));
  if (text === undefined) throw fail(`Unknown export format: ${format}`);
  ctx.io.out(text);
}

function configShow(ctx: Ctx, args: string[]): void {
  const f = goFlags("config:show", args, { bool: ["merged"] });
  const app = getApp(ctx, f.positional[0]);
  ctx.io.info2Quiet(`${app.name} env vars`);
  const env = sortedEnv(app);
  if (env.length > 0) ctx.io.line(columnize("", env));
}

function configKeys(ctx: Ctx, args: string[]): void {
  const f = goFlags("config:keys", args, { bool: ["merged"] });
  const app = getApp(ctx, f.positional[0]);
  for (const [k] of sortedEnv(app)) ctx.io.line(k);
}

export const configCommands: Record<string, CommandDef> = {
  "config:set": { run: configSet },
  "config:unset": { run: configUnset },
  "config:clear": { run: configClear },
  "config:get": { run: configGet },
  "config:export": { run: configExport },
  "config:show": { run: configShow },
  config: { run: configShow },
  "config:keys": { run: configKeys },
};
