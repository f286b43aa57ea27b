/**
 * Desired state: what one instance should be, from its subscription, its instance row, the tier
 * policy and the clock. Pure (DESIGN section 5): no I/O, no clock (`now` is an option), no
 * randomness; the same input always gives the same DesiredInstance, hashes and secrets included.
 *
 * Order of decisions:
 * 1. billingPhase: Stripe status (and grace/retention clocks) → running | stopped | deprovisioned
 *    | none. `none` (no instance yet) becomes `stopped` here, since an instance row exists.
 * 2. `instances.desired_state` may only lower that phase, never raise it.
 * 3. `reconcile_paused` → `paused: true` (plan acts on nothing).
 * 4. Each component's spec comes from the template, the operator's overrides and the tier. No
 *    tenant-written value (`instances.config`) is an input, and every image must be on the
 *    operator's allow-list (IMAGE_ALLOWLIST).
 */
import { TerminalError } from "../errors.ts";
import { contentHash } from "./hash.ts";
import { type InstanceSecrets,instanceSecrets } from "./secrets.ts";
import {
  BASE_DOMAIN_PLACEHOLDER,
  type ComponentOverride,
  imageAllowed,
  imageRepository,
  type InstanceTemplate,
  OVERRIDES_FIELD,
  parseInstanceOverrides,
  SUBDOMAIN_PLACEHOLDER,
} from "./template.ts";
import {
  appName,
  type Component,
  COMPONENTS,
  type DesiredApp,
  type DesiredInstance,
  type InstanceState,
  type Phase,
  PHASES,
  type ResourceLimits,
  type StorageSpec,
  type SubscriptionState,
} from "./types.ts";

const DAY_MS = 86_400_000;
export const DEFAULT_GRACE_PERIOD_MS = 7 * DAY_MS;
export const DEFAULT_RETENTION_PERIOD_MS = 30 * DAY_MS;
/** The config var every app carries; how config drift is found (DESIGN section 5). */
export const SPEC_HASH_ENV = "MINDROOM_SPEC_HASH";
/** Floors for a component's share of the tier, so a tiny tier still gives a startable container. */
export const MIN_MEMORY_MB = 64;
export const MIN_CPUS = 0.05;

export interface DesiredOptions {
  readonly now: Date;
  readonly gracePeriodMs: number;
  readonly retentionPeriodMs: number;
  readonly baseDomain: string;
  /** Secret: derives per-instance secrets. Never logged, never in an error message. */
  readonly masterKey: string;
  readonly template: InstanceTemplate;
  /** Repositories (or `registry/path/` prefixes) an image may come from; see imageAllowed. */
  readonly imageAllowlist: readonly string[];
  /** Whether apps get TLS and https URLs (false for `*.localhost` sandbox domains). */
  readonly tls: boolean;
}

export interface BillingPhase {
  readonly phase: Phase | "none";
  readonly reason: string;
  /** When this answer changes by itself (grace or retention end), or null. */
  readonly changesAt: Date | null;
}

type ClockOptions = Pick<DesiredOptions, "now" | "gracePeriodMs" | "retentionPeriodMs">;

/** The phase Stripe's status allows (DESIGN section 5, reference/stripe.md section 9.3). */
export function billingPhase(sub: SubscriptionState, opts: ClockOptions): BillingPhase {
  switch (sub.status) {
    case "trialing":
    case "active":
      return { phase: "running", reason: activeReason(sub), changesAt: null };
    case "past_due":
      return pastDuePhase(sub, opts);
    case "unpaid":
    case "paused":
      return { phase: "stopped", reason: `subscription is ${sub.status}: suspended, data kept`, changesAt: null };
    case "incomplete":
      return { phase: "none", reason: "subscription is incomplete: first payment pending, no instance yet", changesAt: null };
    case "canceled":
    case "incomplete_expired":
      return endedPhase(sub, opts);
  }
}

function activeReason(sub: SubscriptionState): string {
  if (!sub.cancelAtPeriodEnd) return `subscription is ${sub.status}`;
  const end = sub.currentPeriodEnd ? ` (period ends ${sub.currentPeriodEnd.toISOString()})` : "";
  return `subscription is ${sub.status}, canceling at period end${end}: keeps running until Stripe ends it`;
}

function pastDuePhase(sub: SubscriptionState, opts: ClockOptions): BillingPhase {
  // No recorded start: the grace clock has not started. Keep running rather than suspend a
  // customer on missing bookkeeping; the Stripe source records past_due_since when it sees it.
  if (!sub.pastDueSince) {
    return { phase: "running", reason: "subscription is past_due; grace clock not started (past_due_since unknown)", changesAt: null };
  }
  const graceEnds = new Date(sub.pastDueSince.getTime() + opts.gracePeriodMs);
  const since = `past_due since ${sub.pastDueSince.toISOString()}`;
  if (opts.now < graceEnds) {
    return { phase: "running", reason: `${since}; grace ends ${graceEnds.toISOString()}`, changesAt: graceEnds };
  }
  return { phase: "stopped", reason: `${since}; grace ended ${graceEnds.toISOString()}`, changesAt: null };
}

function endedPhase(sub: SubscriptionState, opts: ClockOptions): BillingPhase {
  // Never tear down without a known cancel time: data loss cannot be undone, a stopped instance can.
  if (!sub.canceledAt) {
    return { phase: "stopped", reason: `subscription is ${sub.status}; cancel time unknown, so no teardown is scheduled`, changesAt: null };
  }
  const teardownAt = new Date(sub.canceledAt.getTime() + opts.retentionPeriodMs);
  const since = `subscription is ${sub.status} since ${sub.canceledAt.toISOString()}`;
  if (opts.now < teardownAt) {
    return { phase: "stopped", reason: `${since}; data retained until ${teardownAt.toISOString()}`, changesAt: teardownAt };
  }
  return { phase: "deprovisioned", reason: `${since}; retention ended ${teardownAt.toISOString()}`, changesAt: null };
}

/** Applies the `desired_state` override, which may only lower the phase (rank = index in PHASES). */
export function effectivePhase(billing: BillingPhase, override: Phase | null): { phase: Phase; reason: string; changesAt: Date | null } {
  const base: Phase = billing.phase === "none" ? "stopped" : billing.phase;
  const reason = billing.phase === "none" ? `${billing.reason}; an existing instance is kept stopped` : billing.reason;
  if (override === null || override === base) return { phase: base, reason, changesAt: billing.changesAt };
  if (PHASES.indexOf(override) < PHASES.indexOf(base)) {
    return { phase: base, reason: `${reason}; desired_state ${override} ignored: an override may only lower the phase`, changesAt: billing.changesAt };
  }
  // Lowered: billing's next change can only matter if it could go lower still.
  const changesAt = override === "deprovisioned" ? null : billing.changesAt;
  return { phase: override, reason: `${reason}; lowered to ${override} by desired_state`, changesAt };
}

/** The whole desired instance. Throws TerminalError for a bad subdomain, override, image or master key. */
export function desiredInstance(sub: SubscriptionState, inst: InstanceState, opts: DesiredOptions): DesiredInstance {
  const { phase, reason, changesAt } = effectivePhase(billingPhase(sub, opts), inst.desiredState);
  const overrides = parseInstanceOverrides(inst.overrides);
  const context = instanceContext(sub, inst, opts);
  const apps = COMPONENTS.map((component) => desiredApp(component, context, overrides[component]));
  return {
    subscriptionId: sub.id,
    instanceId: inst.id,
    subdomain: inst.subdomain,
    tier: sub.tier,
    phase,
    reason: inst.reconcilePaused ? `reconcile paused (observe only); ${reason}` : reason,
    paused: inst.reconcilePaused,
    apps,
    specHash: contentHash(apps.map((app) => [app.app, app.specHash])),
    changesAt,
  };
}

/** Everything about an instance that its components' specs are rendered from. */
export interface InstanceContext {
  readonly sub: SubscriptionState;
  readonly inst: InstanceState;
  readonly opts: DesiredOptions;
  readonly domains: Readonly<Record<Component, string>>;
  readonly secrets: InstanceSecrets;
}

export function instanceContext(sub: SubscriptionState, inst: InstanceState, opts: DesiredOptions): InstanceContext {
  checkName("subdomain", inst.subdomain, SUBDOMAIN_PATTERN, 63);
  const domains = {} as Record<Component, string>;
  for (const component of COMPONENTS) {
    domains[component] = checkName(`${component} domain`, fill(opts.template[component].domain, inst.subdomain, opts.baseDomain), HOSTNAME_PATTERN, 253);
  }
  return { sub, inst, opts, domains, secrets: instanceSecrets(opts.masterKey, inst.id) };
}

/** One component's desired app, with MINDROOM_SPEC_HASH set to the hash of everything else. */
export function desiredApp(component: Component, ctx: InstanceContext, override: ComponentOverride | undefined): DesiredApp {
  const tpl = ctx.opts.template[component];
  const app = checkName("app name", appName(ctx.inst.subdomain, component), APP_NAME_PATTERN, 63);
  const storage: StorageSpec | null = tpl.storage
    ? { entry: checkName("storage entry", fill(tpl.storage.entry, ctx.inst.subdomain, ctx.opts.baseDomain), STORAGE_ENTRY_PATTERN, 45), mountPath: tpl.storage.mountPath }
    : null;
  const own = controllerEnvironment(component, ctx, storage);
  const env = { ...own, ...checkedOverrideEnv(component, own, override) };
  const spec = {
    component,
    app,
    image: allowedImage(component, override?.image ?? tpl.image, ctx.opts.imageAllowlist),
    port: tpl.port,
    healthPath: tpl.healthPath,
    storage,
    domains: [ctx.domains[component]],
    env,
    resources: componentResources(ctx.sub.resources, tpl.resourceShare),
    tls: ctx.opts.tls,
  };
  const specHash = appSpecHash(spec);
  return { ...spec, env: { ...env, [SPEC_HASH_ENV]: specHash }, specHash };
}

/** The image, if the operator's allow-list admits it; a TerminalError naming the repository otherwise. */
function allowedImage(component: Component, image: string, allowlist: readonly string[]): string {
  if (imageAllowed(image, allowlist)) return image;
  throw new TerminalError(
    "image_not_allowed",
    `${OVERRIDES_FIELD}.${component}.image: repository ${imageRepository(image)} is not in IMAGE_ALLOWLIST; the operator must allow it before it can be deployed`,
  );
}

/** Hash of an app's spec, ignoring its own MINDROOM_SPEC_HASH and specHash fields. */
export function appSpecHash(app: Omit<DesiredApp, "specHash"> | DesiredApp): string {
  const { [SPEC_HASH_ENV]: _ownHash, ...env } = app.env;
  const { specHash: _specHash, ...spec } = app as DesiredApp;
  return contentHash({ ...spec, env });
}

/** The tier's budget times the component's share, floored so the container can start. */
export function componentResources(tier: ResourceLimits, share: number): ResourceLimits {
  if (!(tier.memoryMb > 0) || !(tier.cpus > 0)) throw new TerminalError("invalid_tier_resources", "tier resources must be positive");
  return {
    memoryMb: Math.max(MIN_MEMORY_MB, Math.floor(tier.memoryMb * share)),
    cpus: Math.max(MIN_CPUS, Math.round(tier.cpus * share * 100) / 100),
  };
}

/** Tier limits and feature flags as environment (backend and frontend). */
export function tierEnvironment(sub: SubscriptionState): Record<string, string> {
  const limit = (value: number | null): string => (value === null ? "unlimited" : String(value));
  const env: Record<string, string> = {
    MINDROOM_TIER: sub.tier,
    MAX_AGENTS: limit(sub.limits.maxAgents),
    MAX_MESSAGES_PER_DAY: limit(sub.limits.maxMessagesPerDay),
    MAX_STORAGE_GB: limit(sub.limits.maxStorageGb),
    MAX_PLATFORMS: limit(sub.limits.maxPlatforms),
    MAX_TEAM_MEMBERS: limit(sub.limits.maxTeamMembers),
  };
  for (const name of Object.keys(sub.features).sort()) {
    const key = `FEATURE_${name.toUpperCase().replace(/[^A-Z0-9]+/g, "_").replace(/^_+|_+$/g, "")}`;
    if (key === "FEATURE_" || key in env) throw new TerminalError("invalid_features", `feature name ${JSON.stringify(name)} is empty or collides with another`);
    env[key] = sub.features[name] ? "true" : "false";
  }
  return env;
}

/** Public URLs of the instance; https only when TLS is on. */
export function instanceUrls(ctx: InstanceContext): { publicUrl: string; apiUrl: string; matrixUrl: string } {
  const scheme = ctx.opts.tls ? "https" : "http";
  return { publicUrl: `${scheme}://${ctx.domains.frontend}`, apiUrl: `${scheme}://${ctx.domains.backend}`, matrixUrl: `${scheme}://${ctx.domains.matrix}` };
}

/**
 * The environment the controller owns. Ids and URLs go to every component; tier limits and
 * features to backend and frontend; secrets only where they are used (least privilege).
 */
function controllerEnvironment(component: Component, ctx: InstanceContext, storage: StorageSpec | null): Record<string, string> {
  const urls = instanceUrls(ctx);
  const common: Record<string, string> = {
    MINDROOM_INSTANCE_ID: ctx.inst.id,
    MINDROOM_SUBSCRIPTION_ID: ctx.sub.id,
    MINDROOM_ACCOUNT_ID: ctx.sub.accountId,
    MINDROOM_COMPONENT: component,
    MINDROOM_PUBLIC_URL: urls.publicUrl,
    MINDROOM_API_URL: urls.apiUrl,
    MATRIX_HOMESERVER: urls.matrixUrl,
    MATRIX_SERVER_NAME: ctx.domains.matrix,
  };
  switch (component) {
    case "matrix":
      return {
        ...common,
        SYNAPSE_SERVER_NAME: ctx.domains.matrix,
        SYNAPSE_REPORT_STATS: "no",
        ...(storage ? { SYNAPSE_DATA_DIR: storage.mountPath, SYNAPSE_CONFIG_DIR: storage.mountPath } : {}),
        MATRIX_REGISTRATION_SHARED_SECRET: ctx.secrets.matrixRegistrationSharedSecret,
      };
    case "backend":
      return {
        ...common,
        ...tierEnvironment(ctx.sub),
        ...(storage ? { MINDROOM_STORAGE_PATH: storage.mountPath } : {}),
        MATRIX_REGISTRATION_SHARED_SECRET: ctx.secrets.matrixRegistrationSharedSecret,
        MINDROOM_ADMIN_TOKEN: ctx.secrets.adminToken,
      };
    case "frontend":
      return { ...common, ...tierEnvironment(ctx.sub) };
  }
}

/** Prefixes an instance override may never set: our namespace, tier limits, features, Dokku's. */
const RESERVED_ENV_PREFIXES = ["MINDROOM_", "MATRIX_", "SYNAPSE_", "MAX_", "FEATURE_", "DOKKU_"];

function checkedOverrideEnv(component: Component, own: Readonly<Record<string, string>>, override: ComponentOverride | undefined): Record<string, string> {
  const env = override?.env ?? {};
  for (const key of Object.keys(env)) {
    if (key in own || RESERVED_ENV_PREFIXES.some((prefix) => key.startsWith(prefix))) {
      throw new TerminalError("invalid_instance_overrides", `invalid instance overrides: ${OVERRIDES_FIELD}.${component}.env.${key}: reserved by the controller`);
    }
  }
  return env;
}

const SUBDOMAIN_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
/** Dokku's rule for new app names, minus dots (a dotted name becomes the whole hostname). */
const APP_NAME_PATTERN = /^[a-z0-9][a-z0-9-]*$/;
/** DNS-1123 label; Dokku storage entries are at most 45 characters. */
const STORAGE_ENTRY_PATTERN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const HOSTNAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

function fill(pattern: string, subdomain: string, baseDomain: string): string {
  return pattern.replaceAll(SUBDOMAIN_PLACEHOLDER, subdomain).replaceAll(BASE_DOMAIN_PLACEHOLDER, baseDomain);
}

function checkName(what: string, value: string, pattern: RegExp, maxLength: number): string {
  if (value.length > maxLength || !pattern.test(value)) {
    throw new TerminalError("invalid_name", `${what} ${JSON.stringify(value)} is not valid (${pattern.source}, at most ${maxLength} characters)`);
  }
  return value;
}
