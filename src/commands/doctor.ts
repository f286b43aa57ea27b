/**
 * `mindroom-reconciler doctor`: checks what the daemon depends on and prints, for each, "ok" or
 * what is wrong and what to do. Exit 0 when everything is ok, 1 when something is not.
 * Read-only: it observes hosts but changes nothing (a host key is pinned on first contact only).
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import { Registry } from "prom-client";

import { createDokkuDriver } from "../drivers/dokku/driver.ts";
import { createSmtpMailer } from "../drivers/mail/smtp.ts";
import { coerceError } from "../errors.ts";
import { needsSandbox } from "../runtime/hosts.ts";
import { loadKeyMaterial } from "../runtime/secrets.ts";
import { createStripeClient } from "../sources/stripe/sources.ts";
import { listHosts, pinHostKey } from "../state/hosts.ts";
import { migrationStatus } from "../state/migrate.ts";
import { outboxSummary } from "../state/notifications.ts";
import { type CommandContext, withDatabase } from "./common.ts";

interface Check {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler doctor\n");
    return 2;
  }
  return withDatabase(async (ctx) => {
    const checks = [await database(ctx), ...(await hosts(ctx)), ...(await stripe(ctx)), await inbox(ctx), await email(ctx)];
    for (const check of checks) process.stdout.write(`${check.ok ? "ok  " : "FAIL"}  ${check.name}: ${check.detail}\n`);
    const failed = checks.filter((check) => !check.ok).length;
    process.stdout.write(`\n${failed === 0 ? "everything looks right" : `${failed} problem${failed === 1 ? "" : "s"} found`}\n`);
    return failed === 0 ? 0 : 1;
  });
}

async function database(ctx: CommandContext): Promise<Check> {
  try {
    const status = await migrationStatus(ctx.db.sql);
    if (status.pending > 0) return { name: "database", ok: false, detail: `${status.pending} migrations pending: run mindroom-reconciler migrate (serve does it at start)` };
    return { name: "database", ok: true, detail: `reachable, at migration ${status.current}${ctx.db.embedded ? " (embedded)" : ""}` };
  } catch (error) {
    return { name: "database", ok: false, detail: `${coerceError(error).message}: check DATABASE_URL` };
  }
}

async function hosts(ctx: CommandContext): Promise<Check[]> {
  const { db, config } = ctx;
  const all = (await listHosts(db.sql)).filter((host) => host.enabled);
  if (all.length === 0) return [{ name: "hosts", ok: true, detail: "none registered: serve runs a sandbox Dokku host (set DOKKU_HOSTS for real hosts)" }];
  const keys = await loadKeyMaterial(config, await needsSandbox(db.sql, config));
  const driver = createDokkuDriver({ privateKey: keys.sshPrivateKey, registry: new Registry(), commandTimeoutMs: 15_000, onHostKeyLearned: (hostId, key) => pinHostKey(db.sql, hostId, key) });
  try {
    const checks: Check[] = [];
    for (const host of all) {
      try {
        const view = await driver.observeHost(host, AbortSignal.timeout(20_000));
        checks.push({ name: `host ${host.name}`, ok: true, detail: `Dokku ${view.dokkuVersion}, ${view.apps.size} apps, ${host.instances}/${host.capacity} instances placed` });
      } catch (error) {
        const hint = host.name === "sandbox" ? " (the sandbox host lives inside `serve`: start it first)" : "";
        checks.push({ name: `host ${host.name}`, ok: false, detail: `${coerceError(error).message}${hint}` });
      }
    }
    return checks;
  } finally {
    await driver.close();
  }
}

async function stripe(ctx: CommandContext): Promise<Check[]> {
  const { stripe: settings } = ctx.config;
  const checks: Check[] = [await webhookCheck(ctx)];
  const client = createStripeClient(settings);
  if (!client) return [...checks, { name: "stripe api", ok: true, detail: "STRIPE_API_KEY not set: payload mode, ordering is best-effort (see README)" }];
  try {
    await client.events.list({ limit: 1 });
    checks.push({ name: "stripe api", ok: true, detail: "the API key works (refetch and catch-up enabled)" });
  } catch (error) {
    checks.push({ name: "stripe api", ok: false, detail: `${coerceError(error).message}: check STRIPE_API_KEY` });
  }
  return checks;
}

async function webhookCheck(ctx: CommandContext): Promise<Check> {
  const count = ctx.config.stripe.webhookSecrets.length;
  if (count > 0) return { name: "stripe webhook", ok: true, detail: `${count} signing secret(s) configured` };
  if (!(await needsSandbox(ctx.db.sql, ctx.config))) {
    return { name: "stripe webhook", ok: false, detail: "STRIPE_WEBHOOK_SECRET is not set: the webhook answers 503 until it is" };
  }
  const file = join(resolve(ctx.config.dataDir), "stripe_webhook_secret");
  const generated = await readFile(file).then(() => true, () => false);
  return { name: "stripe webhook", ok: true, detail: generated ? `sandbox mode: serve verifies with the generated secret in ${file}` : `sandbox mode: serve generates a secret into ${file} at start` };
}

async function inbox(ctx: CommandContext): Promise<Check> {
  const [row] = await ctx.db.sql<{ dead: number; pending: number }[]>`
    select count(*) filter (where status = 'dead')::int as dead,
           count(*) filter (where status in ('pending', 'failed'))::int as pending
    from public.stripe_events`;
  const dead = row?.dead ?? 0;
  return dead > 0
    ? { name: "stripe inbox", ok: false, detail: `${dead} dead-lettered events: see mindroom-reconciler status, fix the cause, then stripe sync` }
    : { name: "stripe inbox", ok: true, detail: `${row?.pending ?? 0} pending, none dead` };
}

async function email(ctx: CommandContext): Promise<Check> {
  const outbox = await outboxSummary(ctx.db.sql);
  const queued = `${outbox.pending} pending, ${outbox.failed} failed in the last 7 days`;
  if (!ctx.config.smtp) return { name: "email", ok: true, detail: `off: SMTP_URL is not set, so notifications are only written to the log (${queued})` };
  const mailer = createSmtpMailer({ ...ctx.config.smtp, timeoutMs: 15_000 });
  try {
    await mailer.verify();
  } catch (error) {
    return { name: "email", ok: false, detail: `${coerceError(error).message}: check SMTP_URL (${queued})` };
  } finally {
    mailer.close();
  }
  if (outbox.failed > 0) return { name: "email", ok: false, detail: `SMTP server reachable, but ${queued}: see mindroom-reconciler status and README "Emails are not arriving"` };
  return { name: "email", ok: true, detail: `SMTP server reachable and accepts our credentials (${queued})` };
}
