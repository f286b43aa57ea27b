/**
 * Plan: the ordered actions that move one instance from what its host shows toward its desired
 * state. Pure (DESIGN section 7): no I/O, no clock. Every action is idempotent against the Dokku
 * CLI, so re-planning after a crash at any step and applying again is always safe; the plan only
 * skips what observation shows done.
 *
 * Decisions (each one a contract the reconcile layer relies on):
 * - Deep detail. The reconcile layer deep-observes the instance's own apps before planning, so
 *   `deep` is present for every existing app. When it is absent (shallow observe only), every field
 *   is unknown: the plan emits the idempotent setters, a deploy (a no-op with the same image) and a
 *   restart of a deployed app so the re-sent config takes effect. Correct, never silent; noisier.
 * - Start before TLS. A stopped, deployed app is (re)started before `enableTls`: certificate
 *   issuance can fail for reasons outside our control (DNS) and must not keep the app down.
 * - Stopped phase: stop running components in reverse order (frontend, backend, matrix) and do
 *   nothing else. Missing apps are not created and stale config is not re-rendered: nothing runs,
 *   and resuming (phase running) re-renders whatever changed before starting.
 * - Teardown (deprovisioned): until `backupCompleted`, only non-destructive steps: stop what runs
 *   (for a consistent backup) and back up every storage that may hold data. After that: stop,
 *   destroy apps, destroy storage. With `storageEntries` unknown, an entry is assumed to exist
 *   exactly while its app does (so a crash between destroyApp and destroyStorage leaks the entry
 *   unless the caller passes `storageEntries`).
 * - Orphans: an observed app named `<subdomain>-<word>` (one word, hyphen-free, so never another
 *   instance's app) that is not a desired app is reported by driftKinds and destroyed only when
 *   `allowOrphanDestroy`. Other observed names are not this instance's and are ignored.
 * - `paused` desired → no actions at all (observe and report only).
 */
import {
  type Action,
  type Component,
  COMPONENTS,
  type DesiredApp,
  type DesiredInstance,
  type ObservedApp,
  type ResourceLimits,
  type StorageSpec,
} from "./types.ts";

export interface PlanInput {
  readonly desired: DesiredInstance;
  /** This instance's apps as observed on its host, by app name; `deep` present when deep-observed. */
  readonly observed: ReadonlyMap<string, ObservedApp>;
  /** Storage entries present on the host, or undefined when not observed (see header). */
  readonly storageEntries?: ReadonlySet<string> | undefined;
  /** A completed pre_deprovision backup exists for every component with storage, newer than the decision to tear down. */
  readonly backupCompleted: boolean;
  /** Apps whose storage already has a completed pre_deprovision backup: not backed up again. */
  readonly backedUp?: ReadonlySet<string> | undefined;
  /** Components the health prober asked to restart. */
  readonly restart: readonly Component[];
  readonly allowOrphanDestroy?: boolean | undefined;
}

export function plan(input: PlanInput): Action[] {
  if (input.desired.paused) return [];
  const orphans = input.allowOrphanDestroy ? instanceOrphans(input.desired, input.observed).map((app): Action => ({ kind: "destroyApp", app })) : [];
  switch (input.desired.phase) {
    case "running":
      return [...inOrder(input.desired.apps).flatMap((app) => planRunningApp(app, input)), ...orphans];
    case "stopped":
      return [...stopRunning(input), ...orphans];
    case "deprovisioned":
      return [...planTeardown(input), ...orphans];
  }
}

/** What differs between a desired app and an existing observed one; unknown fields count as differing. */
export interface AppDiff {
  /** Deep detail was present, so the flags below are observations rather than assumptions. */
  readonly known: boolean;
  readonly storage: boolean;
  readonly config: boolean;
  readonly resources: boolean;
  readonly domains: boolean;
  /** Not deployed, or deployed with another (or an unknown) image. */
  readonly image: boolean;
  readonly tls: boolean;
}

export function diffApp(app: DesiredApp, observed: ObservedApp): AppDiff {
  const deep = observed.deep;
  if (!deep) {
    return { known: false, storage: app.storage !== null, config: true, resources: true, domains: true, image: true, tls: app.tls };
  }
  return {
    known: true,
    storage: app.storage !== null && !hasMount(deep.mounts, app.storage),
    config: deep.specHash !== app.specHash || envDiffers(app.env, deep.env),
    resources: !sameResources(deep.resources, app.resources),
    domains: !sameSet(deep.domains, app.domains),
    image: !observed.deployed || deep.image !== app.image,
    tls: app.tls && !deep.tls,
  };
}

/** A desired key whose observed value differs (keys added by hand are left alone). */
function envDiffers(desired: Readonly<Record<string, string>>, observed: Readonly<Record<string, string>> | undefined): boolean {
  if (!observed) return false;
  return Object.entries(desired).some(([key, value]) => observed[key] !== value);
}

/** Provision, converge or resume one component, in the order of DESIGN section 7. */
function planRunningApp(app: DesiredApp, input: PlanInput): Action[] {
  const observed = input.observed.get(app.app);
  if (!observed) {
    return [{ kind: "createApp", app: app.app }, ...setters(app, FULL_DIFF), { kind: "deployImage", app: app.app, image: app.image }, ...tls(app, app.tls)];
  }
  const diff = diffApp(app, observed);
  const deploy: Action[] = diff.image ? [{ kind: "deployImage", app: app.app, image: app.image }] : [];
  return [...setters(app, diff), ...deploy, ...startOrRestart(app, observed, diff, input.restart), ...tls(app, diff.tls)];
}

const FULL_DIFF: AppDiff = { known: false, storage: true, config: true, resources: true, domains: true, image: true, tls: true };

function setters(app: DesiredApp, diff: AppDiff): Action[] {
  const actions: Action[] = [];
  if (diff.storage && app.storage) actions.push({ kind: "ensureStorage", app: app.app, storage: app.storage });
  if (diff.config) actions.push({ kind: "setConfig", app: app.app, env: app.env });
  if (diff.resources) actions.push({ kind: "setResources", app: app.app, resources: app.resources });
  if (diff.domains) actions.push({ kind: "setDomains", app: app.app, domains: app.domains });
  return actions;
}

function tls(app: DesiredApp, needed: boolean): Action[] {
  return app.tls && needed ? [{ kind: "enableTls", app: app.app }] : [];
}

/**
 * New containers are needed when config, resources or mounts changed (Dokku applies them on the
 * next start). A deploy already makes new containers, except that a deploy of an unknown image
 * may be a no-op, so an unknown app is restarted. A stopped app is started (new containers too).
 */
function startOrRestart(app: DesiredApp, observed: ObservedApp, diff: AppDiff, restart: readonly Component[]): Action[] {
  if (!observed.deployed) return [];
  if (!diff.known) return [{ kind: "restart", app: app.app }];
  if (diff.image) return [];
  if (!observed.running) return [{ kind: "start", app: app.app }];
  const changed = diff.storage || diff.config || diff.resources;
  return changed || restart.includes(app.component) ? [{ kind: "restart", app: app.app }] : [];
}

/** Pause: stop what runs, frontend first, and nothing else. Also the first step of teardown. */
function stopRunning(input: PlanInput): Action[] {
  return inReverseOrder(input.desired.apps)
    .filter((app) => input.observed.get(app.app)?.running === true)
    .map((app): Action => ({ kind: "stop", app: app.app }));
}

/** Backup first (must complete), then stop, destroy apps, destroy storage. */
function planTeardown(input: PlanInput): Action[] {
  const apps = inReverseOrder(input.desired.apps);
  const withData = apps.flatMap((app) => (app.storage && storageMayExist(app, app.storage, input) ? [{ app: app.app, storage: app.storage }] : []));
  if (!input.backupCompleted && withData.length > 0) {
    const missing = withData.filter((d) => !input.backedUp?.has(d.app));
    return [...stopRunning(input), ...missing.map((d): Action => ({ kind: "backup", ...d, backupType: "pre_deprovision", backupId: null }))];
  }
  return [
    ...stopRunning(input),
    ...apps.filter((app) => input.observed.has(app.app)).map((app): Action => ({ kind: "destroyApp", app: app.app })),
    ...withData.map((d): Action => ({ kind: "destroyStorage", ...d })),
  ];
}

function storageMayExist(app: DesiredApp, storage: StorageSpec, input: PlanInput): boolean {
  return input.storageEntries ? input.storageEntries.has(storage.entry) : input.observed.has(app.app);
}

/** Observed apps named like this instance's (`<subdomain>-<word>`) that are not desired apps. */
export function instanceOrphans(desired: DesiredInstance, observed: ReadonlyMap<string, ObservedApp>): string[] {
  const wanted = new Set(desired.apps.map((app) => app.app));
  const prefix = `${desired.subdomain}-`;
  return [...observed.keys()]
    .filter((name) => !wanted.has(name) && name.startsWith(prefix) && /^[a-z0-9]+$/.test(name.slice(prefix.length)))
    .sort();
}

/** Default shape of our apps on a host: `<subdomain>-<component>`. */
export const APP_PATTERN = new RegExp(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?-(${COMPONENTS.join("|")})$`);

/**
 * Apps on a host that look like ours but belong to no instance row: leaked by a crash or left by
 * hand. Reported (sorted), never destroyed here.
 */
export function findOrphans(observedApps: Iterable<string>, knownApps: ReadonlySet<string>, appPattern: RegExp = APP_PATTERN): string[] {
  return [...new Set(observedApps)].filter((app) => appPattern.test(app) && !knownApps.has(app)).sort();
}

/**
 * Kinds of difference between observed and desired, for `mindroom_drift_total{kind}`. It cannot
 * tell drift from a pending change (a tier change also shows `config_changed`): count it only when
 * nothing changed on our side since the last converged pass (generation == observed_generation).
 * Fields of apps without deep detail are unknown and not reported. Deduplicated, sorted.
 */
export function driftKinds(desired: DesiredInstance, observed: ReadonlyMap<string, ObservedApp>): string[] {
  const kinds = new Set<string>();
  if (instanceOrphans(desired, observed).length > 0) kinds.add("orphan_app");
  for (const app of desired.apps) {
    const seen = observed.get(app.app);
    if (desired.phase === "stopped" && seen?.running) kinds.add("app_running");
    if (desired.phase !== "running") continue;
    if (!seen) {
      kinds.add("app_missing");
      continue;
    }
    for (const kind of appDriftKinds(app, seen)) kinds.add(kind);
  }
  return [...kinds].sort();
}

function appDriftKinds(app: DesiredApp, seen: ObservedApp): string[] {
  const kinds: string[] = [];
  if (!seen.deployed) kinds.push("app_not_deployed");
  else if (!seen.running) kinds.push("app_stopped");
  const diff = diffApp(app, seen);
  if (!diff.known) return kinds;
  if (diff.storage) kinds.push("storage_missing");
  if (diff.config) kinds.push("config_changed");
  if (diff.resources) kinds.push("resources_changed");
  if (diff.domains) kinds.push("domains_changed");
  if (seen.deployed && diff.image) kinds.push("image_changed");
  if (diff.tls) kinds.push("tls_missing");
  return kinds;
}

/** One readable line per action, for the `plan` command. Config VALUES never appear, only keys. */
export function describePlan(actions: readonly Action[]): string[] {
  return actions.map(describeAction);
}

function describeAction(action: Action): string {
  switch (action.kind) {
    case "createApp":
      return `+ create app ${action.app}`;
    case "ensureStorage":
      return `~ ensure storage ${action.storage.entry} mounted at ${action.storage.mountPath} on ${action.app}`;
    case "setConfig":
      return `~ set config on ${action.app}: ${Object.keys(action.env).sort().join(", ")} (values hidden)`;
    case "setResources":
      return `~ set resources on ${action.app}: memory ${action.resources.memoryMb} MB, ${action.resources.cpus} CPU`;
    case "setDomains":
      return `~ set domains on ${action.app}: ${action.domains.join(", ")}`;
    case "deployImage":
      return `~ deploy ${action.image} to ${action.app}`;
    case "enableTls":
      return `~ enable TLS on ${action.app}`;
    case "start":
      return `~ start ${action.app}`;
    case "stop":
      return `~ stop ${action.app}`;
    case "restart":
      return `~ restart ${action.app}`;
    case "backup":
      return `~ back up storage ${action.storage.entry} of ${action.app}`;
    case "restore":
      return `~ restore storage ${action.storage.entry} of ${action.app} from backup ${action.backupId} (restore ${action.restoreId})`;
    case "destroyApp":
      return `- destroy app ${action.app}`;
    case "destroyStorage":
      return `- destroy storage ${action.storage.entry} of ${action.app}`;
    default:
      return unreachable(action);
  }
}

function unreachable(action: never): never {
  throw new Error(`unknown action ${JSON.stringify(action)}`);
}

function inOrder(apps: readonly DesiredApp[]): DesiredApp[] {
  return [...apps].sort((a, b) => COMPONENTS.indexOf(a.component) - COMPONENTS.indexOf(b.component));
}

function inReverseOrder(apps: readonly DesiredApp[]): DesiredApp[] {
  return inOrder(apps).reverse();
}

/** A mount `host:container[:opts]` matches when the container path is ours and the host path is the entry. */
function hasMount(mounts: readonly string[], storage: StorageSpec): boolean {
  return mounts.some((mount) => {
    const [host = "", container = ""] = mount.split(":");
    return container === storage.mountPath && (host === storage.entry || host.endsWith(`/${storage.entry}`));
  });
}

function sameResources(a: ResourceLimits | null, b: ResourceLimits): boolean {
  return a !== null && a.memoryMb === b.memoryMb && a.cpus === b.cpus;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((x) => right.has(x));
}
