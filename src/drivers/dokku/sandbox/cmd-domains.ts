/** domains (§7.4), git:from-image/git:report (§7.5), letsencrypt (§7.8), resource (§7.7). */
import type { CommandDef, Ctx } from "./context.ts";
import { getApp, goFlags, release } from "./context.ts";
import { Fail,fail } from "./io.ts";
import type { Field } from "./report.ts";
import { parseReportArgs, printReport } from "./report.ts";
import type { AppState } from "./state.ts";
import { isRunning } from "./state.ts";

const DOMAIN = /^[a-z0-9.*-]*[a-z0-9*-]$/;

function domainArgs(ctx: Ctx, cmd: string, args: string[]): [AppState, string[]] {
  const app = getApp(ctx, args[0]);
  const domains = args.slice(1);
  if (domains.length === 0) throw fail(`Please specify a domain name. Usage: dokku ${cmd} <app> <domain> [<domain> ...]`);
  for (const d of domains) if (d !== "_" && !DOMAIN.test(d.toLowerCase())) throw fail(`${d} is invalid. exiting...`);
  return [app, domains.map((d) => d.toLowerCase())];
}

function nginxReload(ctx: Ctx, app: AppState, domains: string[]): void {
  if (!isRunning(app)) return;
  for (const d of domains) ctx.io.info1(`Configuring ${d}...(using built-in template)`);
  ctx.io.info1("Creating http nginx.conf");
  ctx.io.verbose("Reloading nginx");
}

function domainsAdd(ctx: Ctx, args: string[]): void {
  const [app, domains] = domainArgs(ctx, "domains:add", args);
  for (const d of domains) {
    if (app.domains.includes(d)) ctx.io.info1(`Skipping: ${d} already added to ${app.name}`);
    else {
      app.domains.push(d);
      ctx.io.info1(`Added ${d} to ${app.name}`);
    }
  }
  app.vhostEnabled = true;
  ctx.host.store.save();
  nginxReload(ctx, app, app.domains);
}

function domainsSet(ctx: Ctx, args: string[]): void {
  const [app, domains] = domainArgs(ctx, "domains:set", args);
  app.domains = [...new Set(domains)];
  app.vhostEnabled = true;
  ctx.host.store.save();
  ctx.io.info1(`Set ${domains.join(" ")} for ${app.name}`);
  nginxReload(ctx, app, app.domains);
}

function domainsRemove(ctx: Ctx, args: string[]): void {
  const [app, domains] = domainArgs(ctx, "domains:remove", args);
  for (const d of domains) {
    app.domains = app.domains.filter((x) => x !== d);
    ctx.io.info1(`Removed ${d} from ${app.name}`);
  }
  ctx.host.store.save();
}

function domainsClear(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  app.domains = [];
  ctx.host.store.save();
  ctx.io.info1(`Cleared domains in ${app.name}`);
}

function domainsReport(ctx: Ctx, args: string[]): void {
  const { rest, opts } = parseReportArgs(args);
  if (opts.format === "json" && !ctx.feat.domainsJson) throw fail("Invalid flag passed, valid flags: --domains-app-enabled, --domains-app-vhosts, --domains-global-enabled, --domains-global-vhosts");
  const names = rest.length > 0 ? [rest[0]] : ctx.host.store.names();
  if (names.length === 0) return ctx.io.warn("You haven't deployed any applications yet");
  for (const name of names) {
    const app = getApp(ctx, name);
    const fields: Field[] = [
      { flag: "--domains-app-enabled", value: String(app.vhostEnabled) },
      { flag: "--domains-app-vhosts", value: app.domains.join(" ") },
      { flag: "--domains-global-enabled", value: String(ctx.host.globalVhost !== null) },
      { flag: "--domains-global-vhosts", value: ctx.host.globalVhost ?? "" },
    ];
    const json = opts.format === "json" ? { ...opts } : opts;
    // JSON (0.38.0+) has the trimmed keys only; text keeps the plugin prefix.
    const spec = { type: "domains", app: app.name, fields, go: ctx.feat.goReports || opts.format === "json" };
    if (opts.format === "json") {
      const trimmed = fields.map((f) => ({ flag: f.flag.replace("--domains-", "--"), value: f.value }));
      printReport(ctx.io, { ...spec, fields: trimmed, go: true }, json);
    } else printReport(ctx.io, spec, opts);
  }
}

/** `git:from-image`: whitespace-split args (rule a), deploy lock, "No changes detected" → 1. */
async function fromImage(ctx: Ctx, args: string[]): Promise<void> {
  const positional = args.filter((a, i) => !a.startsWith("--") && args[i - 1] !== "--build-dir");
  const app = getApp(ctx, positional[0]);
  const image = positional[1];
  if (image === undefined || image === "") throw fail("Please specify a docker image");
  const unlock = ctx.host.locks.acquire(app.name);
  try {
    await ctx.work();
    ctx.io.info1("Generating build context");
    const force = ctx.flags.force || args.includes("--force");
    if (force) ctx.io.info1("Force pulling image");
    else ctx.io.info1(ctx.host.images.has(image) ? "Image exists on host, skipping pull" : "Pulling image");
    ctx.host.images.add(image);
    if (app.image === image && app.deploySource === "docker-image") {
      throw new Fail(1, ["No changes detected, skipping git commit", "Call 'ps:rebuild' on app to rebuild the app from existing source"]);
    }
    ctx.io.info1("Updating git repository with specified build context");
    app.image = image;
    app.deploySource = "docker-image";
    ctx.io.info1(`Building ${app.name} from Dockerfile`);
    await release(ctx, app);
  } finally {
    unlock();
  }
}

function gitReport(ctx: Ctx, args: string[]): void {
  const { rest, opts } = parseReportArgs(args);
  const names = rest.length > 0 ? [rest[0]] : ctx.host.store.names();
  for (const name of names) {
    const app = getApp(ctx, name);
    const fields: Field[] = [
      { flag: "--git-deploy-branch", value: "master" },
      { flag: "--git-global-deploy-branch", value: "master" },
      { flag: "--git-keep-git-dir", value: "false" },
      { flag: "--git-rev-env-var", value: "GIT_REV" },
      { flag: "--git-sha", value: app.image === null ? "" : sha(app.image) },
      { flag: "--git-source-image", value: app.image ?? "" },
      { flag: "--git-last-updated-at", value: app.image === null ? "" : String(app.createdAt) },
    ];
    printReport(ctx.io, { type: "git", app: app.name, fields, go: ctx.feat.goReports }, opts);
  }
}

function sha(s: string): string {
  let h = 0x811c9dc5;
  for (const c of Buffer.from(s)) h = Math.imul(h ^ c, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0").repeat(5);
}

async function letsencryptEnable(ctx: Ctx, args: string[]): Promise<void> {
  const app = getApp(ctx, args[0]);
  const email = app.letsencryptEmail ?? app.env.get("DOKKU_LETSENCRYPT_EMAIL")?.toString() ?? ctx.host.letsencryptEmail;
  if (app.domains.length === 0 || !app.vhostEnabled) throw fail(`No domains detected for ${app.name}`);
  if (email === null || email === "") {
    throw new Fail(1, ["ERROR: Cannot request a certificate without an e-mail address!", "please provide your e-mail address using", `dokku letsencrypt:set ${app.name} email <e-mail>`]);
  }
  if (app.tls.enabled && !args.includes("--force")) {
    ctx.io.info1(`Certificate is still valid for ${app.name}, skipping certificate request`);
    ctx.io.info1("Pass --force to letsencrypt:enable to request a new certificate anyway");
    return;
  }
  await ctx.work();
  ctx.io.info2(`Enabling letsencrypt for ${app.name}`);
  ctx.io.info1(`Enabling ACME proxy for ${app.name}...`);
  ctx.io.info1(`Getting letsencrypt certificate for ${app.name} via HTTP-01`);
  for (const d of app.domains) ctx.io.line(`        - Domain '${d}'`);
  ctx.io.info1("Certificate retrieved successfully.");
  ctx.io.info1("Installing let's encrypt certificates");
  ctx.io.info1(`Disabling ACME proxy for ${app.name}...`);
  ctx.io.info1("Done");
  app.tls = { enabled: true, issuedAt: ctx.host.now() };
  ctx.host.store.save();
}

function letsencryptList(ctx: Ctx): void {
  ctx.io.info2("App name           Certificate Expiry        Time before expiry        Time before renewal");
  for (const name of ctx.host.store.names()) {
    const app = ctx.host.store.apps.get(name) as AppState;
    if (!app.tls.enabled || app.tls.issuedAt === null) continue;
    const expiry = new Date(app.tls.issuedAt + 90 * 86_400_000);
    const stamp = expiry.toISOString().replace("T", " ").slice(0, 19);
    ctx.io.line(`${name.padEnd(19)}${stamp.padEnd(26)}${"89d, 23h, 59m, 59s".padEnd(26)}59d, 23h, 59m, 59s`);
  }
}

function letsencryptSet(ctx: Ctx, args: string[]): void {
  const app = getApp(ctx, args[0]);
  if (args[1] !== "email") throw fail("Invalid property specified, valid properties include: email, server, dns-provider");
  app.letsencryptEmail = args[2] ?? null;
  ctx.host.store.save();
  ctx.io.info2(args[2] === undefined ? "Unsetting email" : `Setting email to ${args[2]}`);
}

const RESOURCE_KEYS = ["cpu", "memory", "memory-swap", "network", "network-ingress", "network-egress", "nvidia-gpu"];

function resourceSet(kind: "limit" | "reserve"): CommandDef["run"] {
  return (ctx, args) => {
    const f = goFlags(`resource:${kind}`, args, { string: ["process-type", ...RESOURCE_KEYS] });
    const app = getApp(ctx, f.positional[0]);
    const proc = f.strings.get("process-type") ?? "_default_";
    const table = kind === "limit" ? app.limits : app.reservations;
    const current = (table[proc] ??= {});
    const label = kind === "limit" ? "limits" : "reservation";
    if (f.strings.size === (f.strings.has("process-type") ? 1 : 0)) {
      ctx.io.info2(`resource ${label} ${app.name} information [${proc === "_default_" ? "defaults" : proc}]`);
      for (const k of RESOURCE_KEYS) ctx.io.verbose(`${k}: ${current[k] ?? ""}`);
      return;
    }
    ctx.io.info2(`Setting resource ${label} for ${app.name}${proc === "_default_" ? "" : ` (${proc})`}`);
    for (const k of RESOURCE_KEYS) {
      const v = f.strings.get(k);
      if (v === undefined) continue;
      if (v === "clear") delete current[k];
      else current[k] = v;
      ctx.io.verbose(`${k}: ${v === "clear" ? "cleared" : v}`);
    }
    ctx.host.store.save();
  };
}

function resourceFields(_ctx: Ctx, app: AppState): Field[] {
  const procs = [...new Set(["_default_", ...Object.keys(app.limits), ...Object.keys(app.reservations)])];
  return procs.flatMap((p) =>
    (["limit", "reserve"] as const).flatMap((kind) =>
      RESOURCE_KEYS.map((k) => ({
        flag: `--resource-${p}.${kind}.${k}`,
        value: (kind === "limit" ? app.limits : app.reservations)[p]?.[k] ?? "",
      })),
    ),
  );
}

export const domainCommands: Record<string, CommandDef> = {
  "domains:add": { run: domainsAdd },
  "domains:set": { run: domainsSet },
  "domains:remove": { run: domainsRemove },
  "domains:clear": { run: domainsClear },
  "domains:report": { run: domainsReport },
  "git:from-image": { run: fromImage, deploy: true, capture: true },
  "git:report": { run: gitReport },
  "letsencrypt:enable": { run: letsencryptEnable, deploy: true },
  "letsencrypt:active": { run: (ctx, args) => ctx.io.line(String(getApp(ctx, args[0]).tls.enabled)) },
  "letsencrypt:list": { run: letsencryptList },
  "letsencrypt:set": { run: letsencryptSet },
  "letsencrypt:disable": {
    run: (ctx, args) => {
      const app = getApp(ctx, args[0]);
      app.tls = { enabled: false, issuedAt: null };
      ctx.host.store.save();
      ctx.io.info1(`Disabling letsencrypt for app ${app.name}`);
    },
  },
  "resource:limit": { run: resourceSet("limit") },
  "resource:reserve": { run: resourceSet("reserve") },
};

export { resourceFields };
