/**
 * Key material the daemon needs: the SSH key for the Dokku user and the master key that derives
 * per-instance secrets. Configured in production; in sandbox mode (no DOKKU_HOSTS) generated once
 * into DATA_DIR and reused, so restarts keep the same instance secrets and the same client key.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";

import { type Config, ConfigError } from "../config.ts";
import { generateEd25519KeyPair } from "../drivers/dokku/keys.ts";

export interface KeyMaterial {
  readonly sshPrivateKey: string;
  readonly masterKey: string;
}

export async function loadKeyMaterial(config: Config, sandboxMode: boolean): Promise<KeyMaterial> {
  const dir = resolve(config.dataDir);
  await mkdir(dir, { recursive: true });
  return { sshPrivateKey: await sshKey(config, sandboxMode, dir), masterKey: await masterKey(config, sandboxMode, dir) };
}

async function sshKey(config: Config, sandboxMode: boolean, dir: string): Promise<string> {
  if (config.sshPrivateKey) return config.sshPrivateKey.replace(/\\n/g, "\n");
  if (config.sshPrivateKeyFile) {
    return readFile(config.sshPrivateKeyFile, "utf8").catch(() => {
      throw new ConfigError("SSH_PRIVATE_KEY_FILE", `expected a readable private key file (cannot read ${config.sshPrivateKeyFile})`);
    });
  }
  if (!sandboxMode) throw new ConfigError("SSH_PRIVATE_KEY", "required outside sandbox mode (DOKKU_HOSTS is set, or dokku_hosts has a host other than sandbox): the private key of the hosts' dokku user (or set SSH_PRIVATE_KEY_FILE; the sandbox's generated key is DATA_DIR/ssh_client_key)");
  return readOrCreate(join(dir, "ssh_client_key"), () => generateEd25519KeyPair().private);
}

async function masterKey(config: Config, sandboxMode: boolean, dir: string): Promise<string> {
  if (config.masterKey) return config.masterKey;
  if (!sandboxMode) throw new ConfigError("MASTER_KEY", "required outside sandbox mode (DOKKU_HOSTS is set, or dokku_hosts has a host other than sandbox): at least 32 characters of secret material that derives per-instance secrets (the sandbox's generated one is in DATA_DIR/master.key; keep it, or every instance's secrets change)");
  return readOrCreate(join(dir, "master.key"), () => randomBytes(32).toString("base64url"));
}

async function readOrCreate(file: string, create: () => string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch {
    const value = create();
    await writeFile(file, value, { mode: 0o600, flag: "wx" }).catch(() => {});
    return readFile(file, "utf8");
  }
}

/**
 * Webhook secrets: STRIPE_WEBHOOK_SECRET when set. In sandbox mode, without one, a secret is
 * generated once into DATA_DIR so that `stripe send` and the daemon agree (and it is logged, as
 * sandbox credentials are). Otherwise none: the webhook answers 503 until one is configured.
 */
/** `generated` is true only when this call created the secret (a restart reuses it). */
export async function webhookSecrets(config: Config, sandboxMode: boolean): Promise<{ secrets: readonly string[]; generated: boolean; file?: string }> {
  if (config.stripe.webhookSecrets.length > 0) return { secrets: config.stripe.webhookSecrets, generated: false };
  if (!sandboxMode) return { secrets: [], generated: false };
  const dir = resolve(config.dataDir);
  await mkdir(dir, { recursive: true });
  const file = join(dir, "stripe_webhook_secret");
  const existed = await readFile(file, "utf8").then(() => true, () => false);
  const secret = await readOrCreate(file, () => `whsec_sandbox${randomBytes(24).toString("hex")}`);
  return { secrets: [secret.trim()], generated: !existed };
}
