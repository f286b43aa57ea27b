/**
 * `mindroom-reconciler stripe sync [--customer ID]` and `stripe send TRIGGER [...]`
 * (src/sources/stripe/cli.ts). `send` needs the database only for a follow-up on an existing
 * `--subscription` without `--tier` (to keep its current tier). It signs with STRIPE_WEBHOOK_SECRET or,
 * when that is unset, with the secret a sandbox-mode daemon generated into DATA_DIR; it never
 * invents one the daemon does not know.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import { type Config, ConfigError, loadConfig } from "../config.ts";
import { run as runStripeCli } from "../sources/stripe/cli.ts";
import { tierOfStripeSubscription } from "../state/instances.ts";
import { withDatabase } from "./common.ts";

export async function run(argv: string[]): Promise<number> {
  const config = loadConfig();
  const stripeConfig = { ...config.stripe, webhookSecrets: await secretsFor(argv[0], config) };
  const deps = { config: { port: config.port, stripe: stripeConfig } };
  if (argv[0] === "sync") return withDatabase((ctx) => runStripeCli(argv, { ...deps, sql: ctx.db.sql }));
  // A follow-up on an existing subscription without --tier keeps the tier the database holds.
  if (argv[0] === "send" && argv.includes("--subscription") && !argv.some((arg) => arg === "--tier" || arg.startsWith("--tier="))) {
    return withDatabase((ctx) => runStripeCli(argv, { ...deps, currentTier: (id) => tierOfStripeSubscription(ctx.db.sql, id) }));
  }
  return runStripeCli(argv, deps);
}

async function secretsFor(verb: string | undefined, config: Config): Promise<readonly string[]> {
  if (config.stripe.webhookSecrets.length > 0 || verb !== "send") return config.stripe.webhookSecrets;
  const file = join(resolve(config.dataDir), "stripe_webhook_secret");
  const secret = await readFile(file, "utf8").catch(() => undefined);
  if (!secret) throw new ConfigError("STRIPE_WEBHOOK_SECRET", `required to sign events (or start serve in sandbox mode first, which writes ${file})`);
  return [secret.trim()];
}
