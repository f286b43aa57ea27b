import { spawnSync } from "node:child_process";

import { describe, expect, test } from "vitest";

import { ConfigError, loadConfig } from "../../src/config.ts";

const cases: Record<string, { reason: string; env: Record<string, string>; variable: string; message: RegExp }> = {
  "port not a number": { reason: "PORT must be an integer", env: { PORT: "eighty" }, variable: "PORT", message: /whole number from 0 to 65535 \(got "eighty"\)/ },
  "port out of range": { reason: "ports stop at 65535", env: { PORT: "70000" }, variable: "PORT", message: /whole number/ },
  "bad duration": { reason: "durations need a unit or milliseconds", env: { GRACE_PERIOD: "a week" }, variable: "GRACE_PERIOD", message: /positive duration/ },
  "duration without a unit": { reason: "300 could be seconds or milliseconds: a unit is required", env: { RESYNC_INTERVAL: "300" }, variable: "RESYNC_INTERVAL", message: /with a unit/ },
  "bad database url": { reason: "only postgres URLs", env: { DATABASE_URL: "mysql://x@y/z" }, variable: "DATABASE_URL", message: /postgres:\/\/ URL$/ },
  "bad dokku host": { reason: "hosts are ssh:// URLs", env: { DOKKU_HOSTS: "dokku@host" }, variable: "DOKKU_HOSTS", message: /ssh:\/\/dokku@host:22/ },
  "dokku host port out of range": { reason: "a port is 1-65535", env: { DOKKU_HOSTS: "ssh://dokku@h:99999" }, variable: "DOKKU_HOSTS", message: /port 99999 is not 1-65535/ },
  "dokku host as root": { reason: "Dokku's commands run as the dokku user", env: { DOKKU_HOSTS: "ssh://root@h:22" }, variable: "DOKKU_HOSTS", message: /the SSH user must be dokku/ },
  "bare command timeout": { reason: "durations need a unit", env: { DOKKU_COMMAND_TIMEOUT: "30" }, variable: "DOKKU_COMMAND_TIMEOUT", message: /positive duration with a unit/ },
  "bare deep interval": { reason: "durations need a unit", env: { DEEP_OBSERVE_INTERVAL: "3600" }, variable: "DEEP_OBSERVE_INTERVAL", message: /positive duration with a unit/ },
  "bad webhook secret": { reason: "Stripe webhook secrets start with whsec_", env: { STRIPE_WEBHOOK_SECRET: "hunter2" }, variable: "STRIPE_WEBHOOK_SECRET", message: /whsec_/ },
  "bad price map": { reason: "tiers are the four known ones", env: { STRIPE_PRICE_TIERS: "price_1=gold" }, variable: "STRIPE_PRICE_TIERS", message: /tier one of free/ },
  "both ssh keys": { reason: "one key source only", env: { SSH_PRIVATE_KEY: "k", SSH_PRIVATE_KEY_FILE: "/f" }, variable: "SSH_PRIVATE_KEY_FILE", message: /either/ },
  "image allow-list with a tag": { reason: "entries are repositories; a tag would pin nothing", env: { IMAGE_ALLOWLIST: "ghcr.io/mindroom-ai/mindroom-backend:v1" }, variable: "IMAGE_ALLOWLIST", message: /without tags/ },
  "image allow-list without the template": {
    reason: "the template's own images must stay deployable",
    env: { IMAGE_ALLOWLIST: "ghcr.io/mindroom-ai/" },
    variable: "IMAGE_ALLOWLIST",
    message: /add docker\.io\/matrixdotorg\/synapse/,
  },
  "SMTP_URL without SMTP_FROM": { reason: "every email needs a sender", env: { SMTP_URL: "smtp://mail.example.com:587" }, variable: "SMTP_FROM", message: /must be set with SMTP_URL/ },
  "short master key": { reason: "the master key derives secrets: it must be long", env: { MASTER_KEY: "short" }, variable: "MASTER_KEY", message: /at least 32/ },
};

describe("loadConfig", () => {
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => {
      let thrown: unknown;
      try {
        loadConfig(tc.env);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, tc.reason).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable, tc.reason).toBe(tc.variable);
      expect((thrown as ConfigError).message, tc.reason).toMatch(tc.message);
    });
  }

  test("secret values are never echoed in the error", () => {
    expect(() => loadConfig({ STRIPE_WEBHOOK_SECRET: "not-a-secret-format-but-private" })).toThrow(ConfigError);
    try {
      loadConfig({ STRIPE_WEBHOOK_SECRET: "not-a-secret-format-but-private" });
    } catch (error) {
      expect((error as Error).message).not.toContain("not-a-secret-format-but-private");
    }
  });

  test("defaults when nothing is set", () => {
    const config = loadConfig({});
    expect(config).toMatchObject({ port: 8080, dataDir: "./.data", maxConcurrentReconciles: 64, hostConcurrency: 4, baseDomain: "mindroom.localhost" });
    expect(config.gracePeriodMs).toBe(7 * 24 * 3600 * 1000);
    expect(config.resyncIntervalMs).toBe(5 * 60 * 1000);
    expect(Object.isFrozen(config)).toBe(true);
  });

  test("the Dokku command timeout: 2 minutes by default, whole milliseconds", () => {
    expect(loadConfig({}).dokkuCommandTimeoutMs).toBe(120_000);
    expect(loadConfig({ DOKKU_COMMAND_TIMEOUT: "15s" }).dokkuCommandTimeoutMs).toBe(15_000);
    expect(loadConfig({ DOKKU_COMMAND_TIMEOUT: "1.5s" }).dokkuCommandTimeoutMs).toBe(1_500);
  });

  test("an empty variable counts as unset", () => {
    expect(loadConfig({ RESYNC_INTERVAL: "", PORT: " " }).resyncIntervalMs).toBe(5 * 60 * 1000);
    expect(loadConfig({ PORT: "" }).port).toBe(8080);
  });

  test("the image allow-list defaults to the template's repositories and accepts registry paths", () => {
    expect(loadConfig({}).imageAllowlist).toEqual(["docker.io/matrixdotorg/synapse", "ghcr.io/mindroom-ai/mindroom-backend", "ghcr.io/mindroom-ai/mindroom-frontend"]);
    expect(loadConfig({ IMAGE_ALLOWLIST: "ghcr.io/mindroom-ai/, docker.io/matrixdotorg/synapse, registry.local:5000/x/" }).imageAllowlist).toEqual([
      "ghcr.io/mindroom-ai/",
      "docker.io/matrixdotorg/synapse",
      "registry.local:5000/x/",
    ]);
  });

  test("webhook secrets split for rotation", () => {
    expect(loadConfig({ STRIPE_WEBHOOK_SECRET: "whsec_old, whsec_new" }).stripe.webhookSecrets).toEqual(["whsec_old", "whsec_new"]);
  });
});

describe("the command line", () => {
  test("an invalid variable prints one line naming it and exits 2 without a stack trace", () => {
    const result = spawnSync(process.execPath, ["src/bin.mjs", "serve"], { env: { PATH: process.env.PATH, PORT: "x" }, encoding: "utf8" });
    expect(result.status).toBe(2);
    expect(result.stderr.trim().split("\n")).toEqual(['configuration error: PORT: expected a whole number from 0 to 65535 (got "x")']);
  });

  test("--help lists the commands and exits 0", () => {
    const result = spawnSync(process.execPath, ["src/bin.mjs", "--help"], { encoding: "utf8" });
    expect(result.status).toBe(0);
    for (const command of ["serve", "migrate", "seed", "plan", "status", "reconcile", "hosts", "sandbox", "stripe"]) {
      expect(result.stdout).toContain(`  ${command} `);
    }
  });

  test("an unknown command exits 2", () => {
    const result = spawnSync(process.execPath, ["src/bin.mjs", "frobnicate"], { encoding: "utf8" });
    expect(result.status).toBe(2);
    expect(result.stderr).toMatch(/unknown command "frobnicate"/);
  });
});
