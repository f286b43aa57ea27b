/**
 * `mindroom-reconciler stripe sync [--customer ID]` and `stripe send TRIGGER [...]`
 * (src/sources/stripe-cli.ts). `send` needs no database; in sandbox mode it signs with the secret
 * the daemon generated into DATA_DIR.
 */
import { loadConfig } from "../config.ts";
import { webhookSecrets } from "../runtime/secrets.ts";
import { run as runStripeCli } from "../sources/stripe-cli.ts";
import { withDatabase } from "./common.ts";

export async function run(argv: string[]): Promise<number> {
  const config = loadConfig();
  const sandboxMode = !config.dokkuHosts;
  const { secrets } = await webhookSecrets(config, sandboxMode);
  const stripeConfig = { ...config.stripe, webhookSecrets: secrets };
  if (argv[0] !== "sync") return runStripeCli(argv, { config: { port: config.port, stripe: stripeConfig } });
  return withDatabase((ctx) => runStripeCli(argv, { sql: ctx.db.sql, config: { port: config.port, stripe: stripeConfig } }));
}
