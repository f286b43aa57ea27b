/** The ps plugin (reference §7.2): start/stop/restart/rebuild and the version-shaped report. */
import { reportCommand } from "./cmd-apps.ts";
import type { CommandDef, Ctx } from "./context.ts";
import { getApp, goFlags, release, stopContainers } from "./context.ts";
import type { Field } from "./report.ts";
import type { AppState } from "./state.ts";
import { runningState } from "./state.ts";

function statusFields(app: AppState): Field[] {
  return app.containers.map((c) => ({
    flag: `--status-${c.proc}.${c.index}`,
    value: `${c.state} (CID: ${c.cid.slice(0, 11)})`,
  }));
}

/** Key set per version: 0.35 base, 0.36 stop timeouts, 0.38.7 the HEAD set (width 34). */
export function psFields(ctx: Ctx, app: AppState): Field[] {
  const f = (flag: string, value: string): Field => ({ flag, value });
  const core = [
    f("--deployed", String(app.deployed)),
    f("--processes", String(app.containers.length)),
    f("--restore", String(app.restore)),
    f("--running", runningState(app)),
    ...statusFields(app),
  ];
  const policy = ctx.feat.psRestartPolicyEmpty ? "" : "on-failure:10";
  if (!ctx.feat.psHeadKeys) {
    const base = [
      f("--ps-can-scale", "true"),
      f("--ps-computed-procfile-path", "Procfile"),
      f("--ps-global-procfile-path", "Procfile"),
      f("--ps-procfile-path", ""),
      f("--ps-restart-policy", policy),
    ];
    const timeouts = ctx.feat.stopTimeoutKeys
      ? [f("--computed-stop-timeout-seconds", "30"), f("--global-stop-timeout-seconds", ""), f("--stop-timeout-seconds", "")]
      : [];
    return [...core, ...base, ...timeouts];
  }
  const head: [string, string][] = [
    ["can-scale", "true"],
    ["computed-dockerfile-start-cmd", ""],
    ["computed-procfile-path", "Procfile"],
    ["computed-restart-policy", "on-failure:10"],
    ["computed-skip-deploy", "false"],
    ["computed-start-cmd", ""],
    ["computed-stop-timeout-seconds", "30"],
    ["dockerfile-start-cmd", ""],
    ["global-procfile-path", ""],
    ["global-restart-policy", ""],
    ["global-skip-deploy", ""],
    ["global-stop-timeout-seconds", ""],
    ["procfile-path", ""],
    ["restart-policy", policy],
    ["skip-deploy", ""],
    ["start-cmd", ""],
    ["stop-timeout-seconds", ""],
  ];
  return [...core, ...head.map(([k, v]) => f(`--ps-${k}`, v))];
}

function appArg(ctx: Ctx, cmd: string, args: string[]): AppState {
  const f = goFlags(cmd, args, { bool: ["all"], string: ["parallel"] });
  return getApp(ctx, f.positional[0]);
}

async function psStop(ctx: Ctx, args: string[]): Promise<void> {
  const app = appArg(ctx, "ps:stop", args);
  if (!app.deployed) {
    ctx.io.warn(`App ${app.name} has not been deployed`);
    return;
  }
  ctx.io.info1Quiet(`Stopping ${app.name}`);
  await stopContainers(ctx, app);
}

async function psStart(ctx: Ctx, args: string[]): Promise<void> {
  const app = appArg(ctx, "ps:start", args);
  if (!app.deployed) {
    ctx.io.warn(`App ${app.name} has not been deployed`);
    return;
  }
  const state = runningState(app);
  if (state === "true") {
    ctx.io.warn(`App ${app.name} already running`);
    return;
  }
  ctx.io.warn(state === "mixed" ? "App is running in mixed mode, releasing" : "App has been detected as not running, releasing");
  await release(ctx, app);
}

async function psRestart(ctx: Ctx, args: string[]): Promise<void> {
  const app = appArg(ctx, "ps:restart", args);
  if (!app.deployed) {
    ctx.io.warn(`App ${app.name} has not been deployed`);
    return;
  }
  await release(ctx, app);
}

/** Rebuild from the recorded source under the deploy lock; no source: nothing happens (→0). */
async function psRebuild(ctx: Ctx, args: string[]): Promise<void> {
  const app = appArg(ctx, "ps:rebuild", args);
  if (app.image === null) return;
  const unlock = ctx.host.locks.acquire(app.name);
  try {
    await ctx.work();
    ctx.io.info1(`Building ${app.name} from ${app.image}`);
    await release(ctx, app);
  } finally {
    unlock();
  }
}

export const psCommands: Record<string, CommandDef> = {
  "ps:stop": { run: psStop },
  "ps:start": { run: psStart, capture: true },
  "ps:restart": { run: psRestart, capture: true },
  "ps:rebuild": { run: psRebuild, capture: true, deploy: true },
  "ps:report": reportCommand("ps", psFields, "ps-"),
};
