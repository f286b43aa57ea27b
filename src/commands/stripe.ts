/**
 * `mindroom-reconciler stripe sync [--customer ID]` and `stripe send TRIGGER [...]`
 * (src/sources/stripe-cli.ts). `send` needs no database. It signs with STRIPE_WEBHOOK_SECRET or,
 * when that is unset, with the secret a sandbox-mode daemon generated into DATA_DIR; it never
 * invents one the daemon does not know.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import { type Config, ConfigError, loadConfig } from "../config.ts";
import { run as runStripeCli } from "../sources/stripe-cli.ts";
import { withDatabase } from "./common.ts";

export async function run(argv: string[]): Promise<number> {
  const config = loadConfig();
  const stripeConfig = { ...config.stripe, webhookSecrets: await secretsFor(argv[0], config) };
  if (argv[0] !== "sync") return runStripeCli(argv, { config: { port: config.port, stripe: stripeConfig } });
  return withDatabase((ctx) => runStripeCli(argv, { sql: ctx.db.sql, config: { port: config.port, stripe: stripeConfig } }));
}

async function secretsFor(verb: string | undefined, config: Config): Promise<readonly string[]> {
  if (config.stripe.webhookSecrets.length > 0 || verb !== "send") return config.stripe.webhookSecrets;
  const file = join(resolve(config.dataDir), "stripe_webhook_secret");
  const secret = await readFile(file, "utf8").catch(() => undefined);
  if (!secret) throw new ConfigError("STRIPE_WEBHOOK_SECRET", `required to sign events (or start serve in sandbox mode first, which writes ${file})`);
  return [secret.trim()];
}
