/**
 * Configuration, parsed once from the environment into a frozen, typed object (STYLE rule 14).
 * Nothing else in the project reads process.env. An invalid variable becomes a ConfigError whose
 * message is one line naming the variable and what it expects; the CLI prints it and exits 2.
 */
import ms from "ms";
import { z } from "zod";

import { DEFAULT_TEMPLATE, IMAGE_PATTERN, imageAllowed, templateRepositories } from "./reconciler/template.ts";
import { TIERS } from "./reconciler/types.ts";

export const DEFAULTS = {
  DATA_DIR: "./.data",
  PORT: 8080,
  BASE_DOMAIN: "mindroom.localhost",
  RESYNC_INTERVAL: "5m",
  HEALTH_INTERVAL: "5m",
  DEEP_OBSERVE_INTERVAL: "1h",
  GRACE_PERIOD: "7d",
  RETENTION_PERIOD: "30d",
  MAX_CONCURRENT_RECONCILES: 64,
  HOST_CONCURRENCY: 4,
  DOKKU_COMMAND_TIMEOUT: "2m",
  LOG_LEVEL: "info",
  SANDBOX_DOKKU_VERSION: "0.38",
  LEADER_LEASE_TTL: "15s",
  DB_REQUEST_TIMEOUT: "5s",
  DB_STATEMENT_TIMEOUT: "60s",
  BACKUP_TIME: "03:00",
  BACKUP_RETENTION: "30d",
  BACKUP_MANUAL_PER_DAY: 5,
  BACKUP_STORE: "local",
  S3_REGION: "us-east-1",
  S3_PREFIX: "mindroom/",
  SUPABASE_BACKUP_BUCKET: "backups",
} as const satisfies Record<string, string | number>;

const MAX_CONCURRENCY = 1024;

/** Variables whose values are secrets: never echoed back in an error. */
const SECRET_VARIABLES = new Set([
  "DATABASE_URL",
  "STRIPE_WEBHOOK_SECRET",
  "STRIPE_API_KEY",
  "SSH_PRIVATE_KEY",
  "MASTER_KEY",
  "SUPABASE_SERVICE_ROLE_KEY",
  "S3_SECRET_ACCESS_KEY",
  "SMTP_URL",
]);

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly variable: string,
    readonly expected: string,
  ) {
    super(`${variable}: ${expected}`);
  }
}

const duration = (what: string) =>
  z.string().transform((text, ctx) => {
    // A bare number is refused: "300" could mean seconds or milliseconds, and guessing wrong is costly.
    const parsed = /^\d+(\.\d+)?$/.test(text.trim()) ? undefined : ms(text as ms.StringValue);
    if (typeof parsed !== "number" || !Number.isFinite(parsed) || parsed <= 0) {
      ctx.addIssue({ code: "custom", message: `expected a positive duration with a unit such as "500ms", "30s", "5m" or "7d" (${what})` });
      return z.NEVER;
    }
    return parsed;
  });

const integer = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `expected a whole number from ${min} to ${max}`)
    .transform(Number)
    .pipe(z.number().int().min(min, `expected a whole number from ${min} to ${max}`).max(max, `expected a whole number from ${min} to ${max}`));

const optionalText = z
  .string()
  .transform((value) => (value.trim() === "" ? undefined : value))
  .optional();

/**
 * Why `url` is not a usable Dokku host URL, or undefined when it is: `ssh://dokku@HOST[:PORT]`,
 * port 1–65535, and the user `dokku` (Dokku's commands run as that user's forced command; root
 * would get a shell, not Dokku).
 */
export function sshUrlProblem(url: string): string | undefined {
  const match = /^ssh:\/\/([A-Za-z0-9._-]+)@([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/.exec(url);
  if (!match) return `expected ssh://dokku@HOST:22 (got ${JSON.stringify(url.slice(0, 80))})`;
  const [, user, , port] = match;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) return `port ${port} is not 1-65535 in ${url}`;
  if (user !== "dokku") return `the SSH user must be dokku, Dokku's own user (got ${user} in ${url})`;
  return undefined;
}

const sshUrl = z.string().superRefine((url, ctx) => {
  const problem = sshUrlProblem(url);
  if (problem) ctx.addIssue({ code: "custom", message: `expected a comma-separated list of ssh://dokku@host:22 URLs: ${problem}` });
});

const priceTiers = z.string().transform((text, ctx) => {
  const map: Record<string, (typeof TIERS)[number]> = {};
  for (const pair of text.split(",").filter((p) => p.trim() !== "")) {
    const [price, tier] = pair.split("=").map((s) => s.trim());
    if (!price || !tier || !(TIERS as readonly string[]).includes(tier)) {
      ctx.addIssue({ code: "custom", message: `expected price_id=tier pairs separated by commas, tier one of ${TIERS.join(", ")}` });
      return z.NEVER;
    }
    map[price] = tier as (typeof TIERS)[number];
  }
  return map;
});

const ALLOWLIST_EXPECTED = "expected a comma-separated list of image repositories (ghcr.io/org/app) or registry paths ending in / (ghcr.io/org/), without tags";
/** Repositories (`ghcr.io/mindroom-ai/mindroom-backend`) or registry paths ending in `/`; no tag or digest. */
const imageAllowlist = z
  .string()
  .transform((text) => text.split(",").map((s) => s.trim()).filter((s) => s !== ""))
  .pipe(
    z
      .array(
        z
          .string()
          .regex(IMAGE_PATTERN, ALLOWLIST_EXPECTED)
          .refine((entry) => !entry.includes("@") && !/:[^/]*$/.test(entry), ALLOWLIST_EXPECTED),
      )
      .min(1, ALLOWLIST_EXPECTED),
  );

const EMAIL = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
/** `a@b.c` or `Name <a@b.c>`. */
const EMAIL_OR_NAMED = /^([^<>@]*<[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+)$/;

const schema = z.object({
  DATABASE_URL: optionalText.pipe(z.url({ protocol: /^postgres(ql)?$/, error: "expected a postgres:// URL" }).optional()),
  DATA_DIR: z.string().min(1).default(DEFAULTS.DATA_DIR),
  PORT: integer(0, 65535).default(DEFAULTS.PORT),
  STRIPE_WEBHOOK_SECRET: optionalText.pipe(
    z
      .string()
      .regex(/^whsec_[A-Za-z0-9_]+(,\s*whsec_[A-Za-z0-9_]+)*$/, "expected one or more whsec_... secrets separated by commas")
      .optional(),
  ),
  STRIPE_API_KEY: optionalText.pipe(z.string().regex(/^(sk|rk)_[A-Za-z0-9_]+$/, "expected a Stripe secret key (sk_... or rk_...)").optional()),
  STRIPE_API_BASE: optionalText.pipe(z.url({ protocol: /^https?$/, error: "expected an http(s):// URL" }).optional()),
  STRIPE_PRICE_TIERS: optionalText.pipe(priceTiers.optional()),
  DOKKU_HOSTS: optionalText.pipe(
    z
      .string()
      .transform((text) => text.split(",").map((s) => s.trim()).filter((s) => s !== ""))
      .pipe(z.array(sshUrl).min(1))
      .optional(),
  ),
  SSH_PRIVATE_KEY: optionalText,
  SSH_PRIVATE_KEY_FILE: optionalText,
  BASE_DOMAIN: z
    .string()
    .regex(/^(?=.{1,200}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, "expected a lowercase DNS domain such as mindroom.example.com")
    .default(DEFAULTS.BASE_DOMAIN),
  MASTER_KEY: optionalText.pipe(z.string().min(32, "expected at least 32 characters of secret material").optional()),
  RESYNC_INTERVAL: duration("how often every instance is reconciled again").prefault(DEFAULTS.RESYNC_INTERVAL),
  HEALTH_INTERVAL: duration("how often each instance is probed").prefault(DEFAULTS.HEALTH_INTERVAL),
  DEEP_OBSERVE_INTERVAL: duration("how often every instance's config, domains and storage are read back to find drift").prefault(DEFAULTS.DEEP_OBSERVE_INTERVAL),
  GRACE_PERIOD: duration("how long past_due instances keep running").prefault(DEFAULTS.GRACE_PERIOD),
  RETENTION_PERIOD: duration("how long canceled instances are kept before teardown").prefault(DEFAULTS.RETENTION_PERIOD),
  MAX_CONCURRENT_RECONCILES: integer(1, MAX_CONCURRENCY).default(DEFAULTS.MAX_CONCURRENT_RECONCILES),
  HOST_CONCURRENCY: integer(1, 64).default(DEFAULTS.HOST_CONCURRENCY),
  DOKKU_COMMAND_TIMEOUT: duration("how long one Dokku command over SSH may take before it is abandoned (what a host that hangs costs)").prefault(DEFAULTS.DOKKU_COMMAND_TIMEOUT),
  IMAGE_ALLOWLIST: optionalText.pipe(imageAllowlist.optional()),
  BACKUP_TIME: z
    .string()
    .regex(/^([01]\d|2[0-3]):[0-5]\d$/, "expected a UTC time of day as HH:MM, such as 03:00")
    .default(DEFAULTS.BACKUP_TIME),
  BACKUP_RETENTION: duration("how long a completed backup is kept").prefault(DEFAULTS.BACKUP_RETENTION),
  BACKUP_MANUAL_PER_DAY: integer(0, 1000).default(DEFAULTS.BACKUP_MANUAL_PER_DAY),
  BACKUP_STORE: z.enum(["local", "s3", "supabase"], "expected local, s3 or supabase").default(DEFAULTS.BACKUP_STORE),
  S3_BUCKET: optionalText.pipe(z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "expected an S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)").optional()),
  S3_ENDPOINT: optionalText.pipe(z.url({ protocol: /^https?$/, error: "expected an http(s):// URL" }).optional()),
  S3_REGION: z.string().regex(/^[a-z0-9-]{1,40}$/, "expected a region name such as us-east-1 or auto").default(DEFAULTS.S3_REGION),
  S3_ACCESS_KEY_ID: optionalText,
  S3_SECRET_ACCESS_KEY: optionalText,
  S3_FORCE_PATH_STYLE: optionalText.pipe(z.enum(["true", "false"], "expected true or false").optional()),
  S3_PREFIX: z
    .string()
    .regex(/^([A-Za-z0-9_.-]+\/)*$/, "expected path segments each ending in / such as mindroom/")
    .default(DEFAULTS.S3_PREFIX),
  SUPABASE_URL: optionalText.pipe(z.url({ protocol: /^https?$/, error: "expected an http(s):// URL" }).optional()),
  SUPABASE_SERVICE_ROLE_KEY: optionalText,
  SUPABASE_BACKUP_BUCKET: z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/, "expected a bucket name (letters, digits, _ . -)").default(DEFAULTS.SUPABASE_BACKUP_BUCKET),
  SMTP_URL: optionalText.pipe(z.url({ protocol: /^smtps?$/, error: "expected an smtp:// (STARTTLS when offered) or smtps:// (TLS) URL, such as smtp://user:password@mail.example.com:587" }).optional()),
  SMTP_FROM: optionalText.pipe(z.string().regex(EMAIL_OR_NAMED, "expected a sender address such as MindRoom <noreply@mindroom.example.com>").optional()),
  ALERT_EMAIL: optionalText.pipe(z.string().regex(EMAIL, "expected one email address such as ops@example.com").optional()),
  PUBLIC_URL: optionalText.pipe(z.url({ protocol: /^https?$/, error: "expected the http(s):// URL where this daemon's HTTP port is reachable, such as https://controller.mindroom.example.com" }).optional()),
  LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"], "expected one of trace, debug, info, warn, error, fatal, silent").default(DEFAULTS.LOG_LEVEL),
  ALLOW_ORPHAN_DESTROY: optionalText.pipe(z.enum(["true", "false"], "expected true or false").optional()),
  SANDBOX_DOKKU_VERSION: z.enum(["0.30", "0.34", "0.38"], "expected 0.30, 0.34 or 0.38").default(DEFAULTS.SANDBOX_DOKKU_VERSION),
  LEADER_LEASE_TTL: duration("how long a leader's lease lasts without renewal; failover takes about this long").prefault(DEFAULTS.LEADER_LEASE_TTL),
  DB_REQUEST_TIMEOUT: duration("how long a request (the Stripe webhook) waits for the database before answering 503").prefault(DEFAULTS.DB_REQUEST_TIMEOUT),
  DB_STATEMENT_TIMEOUT: duration("the server-side statement_timeout of every connection").prefault(DEFAULTS.DB_STATEMENT_TIMEOUT),
  API_TRUST_PROXY: optionalText.pipe(z.enum(["true", "false"], "expected true or false").optional()),
  FAULT_KILL_AFTER_ACTIONS: optionalText.pipe(
    z
      .string()
      .regex(/^\d+:(executed|journaled)$/, "expected N:executed or N:journaled (test-only fault injection)")
      .optional(),
  ),
});

type Raw = z.output<typeof schema>;

export interface Config {
  readonly databaseUrl: string | undefined;
  readonly dataDir: string;
  readonly port: number;
  readonly stripe: {
    readonly webhookSecrets: readonly string[];
    readonly apiKey: string | undefined;
    readonly apiBase: string | undefined;
    readonly priceTiers: Readonly<Record<string, (typeof TIERS)[number]>>;
  };
  readonly dokkuHosts: readonly string[] | undefined;
  readonly sshPrivateKey: string | undefined;
  readonly sshPrivateKeyFile: string | undefined;
  readonly baseDomain: string;
  readonly masterKey: string | undefined;
  readonly resyncIntervalMs: number;
  readonly healthIntervalMs: number;
  /** The slow rotation that finds drift (a config value edited on the host) without a change. */
  readonly deepObserveIntervalMs: number;
  readonly gracePeriodMs: number;
  readonly retentionPeriodMs: number;
  readonly maxConcurrentReconciles: number;
  readonly hostConcurrency: number;
  /** DOKKU_COMMAND_TIMEOUT: the most one Dokku command (connection included) may take. */
  readonly dokkuCommandTimeoutMs: number;
  /** Where deployed images may come from; defaults to the template's own repositories. */
  readonly imageAllowlist: readonly string[];
  readonly backupStore: "local" | "s3" | "supabase";
  readonly backups: {
    /** Minutes after 00:00 UTC when paid instances' daily backups start (spread by per-instance jitter). */
    readonly dailyAtMinute: number;
    readonly retentionMs: number;
    readonly manualPerDay: number;
  };
  /** For BACKUP_STORE=s3; `bucket` and the credentials are set whenever that store is chosen. */
  readonly s3: {
    readonly bucket: string | undefined;
    readonly endpoint: string | undefined;
    readonly region: string;
    readonly accessKeyId: string | undefined;
    readonly secretAccessKey: string | undefined;
    readonly forcePathStyle: boolean;
    readonly prefix: string;
  };
  readonly supabase: { readonly url: string | undefined; readonly serviceRoleKey: string | undefined; readonly backupBucket: string };
  /** Email over SMTP; undefined: notifications go to the log. */
  readonly smtp: { readonly url: string; readonly from: string } | undefined;
  /** Where operator alerts (failed instances, backups) go; undefined: to the log only. */
  readonly alertEmail: string | undefined;
  /** This daemon's external base URL (signed backup download links in emails); undefined: no links. */
  readonly publicUrl: string | undefined;
  readonly logLevel: Raw["LOG_LEVEL"];
  readonly allowOrphanDestroy: boolean;
  readonly sandboxDokkuVersion: Raw["SANDBOX_DOKKU_VERSION"];
  readonly leaderLeaseTtlMs: number;
  /** The webhook's (and any request's) deadline on the database: past it, 503 with Retry-After. */
  readonly dbRequestTimeoutMs: number;
  /** statement_timeout set on every connection: a statement the server runs longer is cancelled. */
  readonly dbStatementTimeoutMs: number;
  /** The /v1 API takes client addresses from X-Forwarded-For (set only behind a proxy that writes it). */
  readonly apiTrustProxy: boolean;
  /**
   * Test-only fault injection: SIGKILL this process right after its Nth external action ran
   * (`executed`, before the journal records it) or was journaled. Unset in production.
   */
  readonly faultKillAfterActions: { readonly count: number; readonly point: "executed" | "journaled" } | undefined;
}

/** Parses the environment. Throws ConfigError naming the first invalid variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // An empty variable counts as unset (VAR= in an env file), so its default applies.
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ""));
  const result = schema.safeParse(present);
  if (!result.success) {
    const issue = result.error.issues[0];
    const variable = String(issue?.path[0] ?? "environment");
    const value = env[variable];
    const shown = value === undefined || SECRET_VARIABLES.has(variable) ? "" : ` (got ${JSON.stringify(value.slice(0, 80))})`;
    throw new ConfigError(variable, `${issue?.message ?? "invalid"}${shown}`);
  }
  const raw = result.data;
  checkCombinations(raw);
  return Object.freeze(toConfig(raw));
}

function checkCombinations(raw: Raw): void {
  if (raw.SSH_PRIVATE_KEY && raw.SSH_PRIVATE_KEY_FILE) {
    throw new ConfigError("SSH_PRIVATE_KEY_FILE", "set either SSH_PRIVATE_KEY or SSH_PRIVATE_KEY_FILE, not both");
  }
  const refused = raw.IMAGE_ALLOWLIST && templateRepositories(DEFAULT_TEMPLATE).filter((repository) => !imageAllowed(repository, raw.IMAGE_ALLOWLIST!));
  if (refused && refused.length > 0) {
    throw new ConfigError("IMAGE_ALLOWLIST", `must allow the template's own images too; add ${refused.join(", ")}`);
  }
  if (raw.SMTP_URL && !raw.SMTP_FROM) {
    throw new ConfigError("SMTP_FROM", "must be set with SMTP_URL: the sender address of every email, such as MindRoom <noreply@mindroom.example.com>");
  }
  checkBackupStore(raw);
}

function checkBackupStore(raw: Raw): void {
  if (raw.BACKUP_STORE === "supabase" && (!raw.SUPABASE_URL || !raw.SUPABASE_SERVICE_ROLE_KEY)) {
    throw new ConfigError("BACKUP_STORE", "supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY to be set");
  }
  if (raw.BACKUP_STORE === "s3") {
    const missing = (["S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] as const).filter((name) => !raw[name]);
    if (missing.length > 0) throw new ConfigError("BACKUP_STORE", `s3 needs ${missing.join(", ")} to be set`);
  }
}

function toConfig(raw: Raw): Config {
  return {
    databaseUrl: raw.DATABASE_URL,
    dataDir: raw.DATA_DIR,
    port: raw.PORT,
    stripe: {
      webhookSecrets: raw.STRIPE_WEBHOOK_SECRET ? raw.STRIPE_WEBHOOK_SECRET.split(",").map((s) => s.trim()) : [],
      apiKey: raw.STRIPE_API_KEY,
      apiBase: raw.STRIPE_API_BASE,
      priceTiers: raw.STRIPE_PRICE_TIERS ?? {},
    },
    dokkuHosts: raw.DOKKU_HOSTS,
    sshPrivateKey: raw.SSH_PRIVATE_KEY,
    sshPrivateKeyFile: raw.SSH_PRIVATE_KEY_FILE,
    baseDomain: raw.BASE_DOMAIN,
    masterKey: raw.MASTER_KEY,
    resyncIntervalMs: raw.RESYNC_INTERVAL,
    healthIntervalMs: raw.HEALTH_INTERVAL,
    deepObserveIntervalMs: raw.DEEP_OBSERVE_INTERVAL,
    gracePeriodMs: raw.GRACE_PERIOD,
    retentionPeriodMs: raw.RETENTION_PERIOD,
    maxConcurrentReconciles: raw.MAX_CONCURRENT_RECONCILES,
    hostConcurrency: raw.HOST_CONCURRENCY,
    dokkuCommandTimeoutMs: Math.max(1, Math.round(raw.DOKKU_COMMAND_TIMEOUT)),
    imageAllowlist: raw.IMAGE_ALLOWLIST ?? templateRepositories(DEFAULT_TEMPLATE),
    backupStore: raw.BACKUP_STORE,
    backups: {
      dailyAtMinute: Number(raw.BACKUP_TIME.slice(0, 2)) * 60 + Number(raw.BACKUP_TIME.slice(3)),
      retentionMs: raw.BACKUP_RETENTION,
      manualPerDay: raw.BACKUP_MANUAL_PER_DAY,
    },
    s3: {
      bucket: raw.S3_BUCKET,
      endpoint: raw.S3_ENDPOINT,
      region: raw.S3_REGION,
      accessKeyId: raw.S3_ACCESS_KEY_ID,
      secretAccessKey: raw.S3_SECRET_ACCESS_KEY,
      forcePathStyle: raw.S3_FORCE_PATH_STYLE === "true",
      prefix: raw.S3_PREFIX,
    },
    supabase: { url: raw.SUPABASE_URL, serviceRoleKey: raw.SUPABASE_SERVICE_ROLE_KEY, backupBucket: raw.SUPABASE_BACKUP_BUCKET },
    smtp: raw.SMTP_URL && raw.SMTP_FROM ? { url: raw.SMTP_URL, from: raw.SMTP_FROM } : undefined,
    alertEmail: raw.ALERT_EMAIL,
    publicUrl: raw.PUBLIC_URL?.replace(/\/+$/, ""),
    logLevel: raw.LOG_LEVEL,
    allowOrphanDestroy: raw.ALLOW_ORPHAN_DESTROY === "true",
    sandboxDokkuVersion: raw.SANDBOX_DOKKU_VERSION,
    leaderLeaseTtlMs: raw.LEADER_LEASE_TTL,
    dbRequestTimeoutMs: raw.DB_REQUEST_TIMEOUT,
    apiTrustProxy: raw.API_TRUST_PROXY === "true",
    dbStatementTimeoutMs: raw.DB_STATEMENT_TIMEOUT,
    faultKillAfterActions: raw.FAULT_KILL_AFTER_ACTIONS ? parseFault(raw.FAULT_KILL_AFTER_ACTIONS) : undefined,
  };
}

function parseFault(text: string): { count: number; point: "executed" | "journaled" } {
  const [count, point] = text.split(":");
  return { count: Number(count), point: point === "executed" ? "executed" : "journaled" };
}
