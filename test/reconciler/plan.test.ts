import fc from "fast-check";
import { describe, expect, test } from "vitest";

import {
  DEFAULT_GRACE_PERIOD_MS,
  DEFAULT_RETENTION_PERIOD_MS,
  desiredInstance,
  type DesiredOptions,
  SPEC_HASH_ENV,
} from "../../src/reconciler/desired.ts";
import { describePlan, driftKinds, findOrphans, plan, type PlanInput } from "../../src/reconciler/plan.ts";
import { parseTemplate, templateRepositories } from "../../src/reconciler/template.ts";
import {
  type Action,
  type Component,
  COMPONENTS,
  type DesiredApp,
  type DesiredInstance,
  type InstanceState,
  type ObservedApp,
  type Phase,
  type ResourceLimits,
  type SubscriptionState,
} from "../../src/reconciler/types.ts";

// ---- fixtures: expectations are built from the same desiredInstance() the controller uses ----

const OPTS: DesiredOptions = {
  now: new Date("2026-03-01T12:00:00.000Z"),
  gracePeriodMs: DEFAULT_GRACE_PERIOD_MS,
  retentionPeriodMs: DEFAULT_RETENTION_PERIOD_MS,
  baseDomain: "mindroom.test",
  masterKey: "test-master-key-0123456789abcdef",
  template: parseTemplate(),
  imageAllowlist: templateRepositories(parseTemplate()),
  tls: true,
};

const SUB: SubscriptionState = {
  id: "sub-1",
  accountId: "acct-1",
  tier: "starter",
  status: "active",
  pastDueSince: null,
  canceledAt: null,
  cancelAtPeriodEnd: false,
  currentPeriodEnd: null,
  region: null,
  limits: { maxAgents: 3, maxMessagesPerDay: 1000, maxStorageGb: 5, maxPlatforms: 3, maxTeamMembers: 1 },
  features: { voice: false },
  resources: { memoryMb: 1024, cpus: 1 },
};
const PRO: SubscriptionState = { ...SUB, tier: "professional", limits: { ...SUB.limits, maxAgents: 10 }, resources: { memoryMb: 2048, cpus: 2 } };

function want(phase: Phase, opts: { paused?: boolean; sub?: SubscriptionState; tls?: boolean } = {}): DesiredInstance {
  const inst: InstanceState = { id: "inst-1", subdomain: "acme", desiredState: phase, reconcilePaused: opts.paused ?? false, overrides: {}, generation: 1 };
  return desiredInstance(opts.sub ?? SUB, inst, { ...OPTS, tls: opts.tls ?? true });
}
const RUNNING = want("running");
const STOPPED = want("stopped");
const GONE = want("deprovisioned");

const app = (component: Component, d: DesiredInstance = RUNNING): DesiredApp => {
  const found = d.apps.find((a) => a.component === component);
  if (!found) throw new Error(component);
  return found;
};
const mount = (a: DesiredApp): string[] => (a.storage ? [`/var/lib/dokku/data/storage/${a.storage.entry}:${a.storage.mountPath}`] : []);

/** An app exactly as desired, running. Override fields to describe drift or partial states. */
function converged(a: DesiredApp, over: Partial<ObservedApp> = {}, deep: Partial<NonNullable<ObservedApp["deep"]>> = {}): ObservedApp {
  return {
    app: a.app,
    deployed: true,
    running: true,
    deep: { specHash: a.specHash, domains: a.domains, mounts: mount(a), resources: a.resources, image: a.image, tls: a.tls, ...deep },
    ...over,
  };
}
const all = (d: DesiredInstance, over: Partial<ObservedApp> = {}): Map<string, ObservedApp> => new Map(d.apps.map((a) => [a.app, converged(a, over)]));
const without = (m: Map<string, ObservedApp>, ...names: string[]): Map<string, ObservedApp> => new Map([...m].filter(([n]) => !names.includes(n)));
const withApp = (m: Map<string, ObservedApp>, o: ObservedApp): Map<string, ObservedApp> => new Map([...m, [o.app, o]]);

// ---- expected action builders (from the desired app, never hand-written values) ----

const create = (a: DesiredApp): Action => ({ kind: "createApp", app: a.app });
const storage = (a: DesiredApp): Action[] => (a.storage ? [{ kind: "ensureStorage", app: a.app, storage: a.storage }] : []);
const config = (a: DesiredApp): Action => ({ kind: "setConfig", app: a.app, env: a.env });
const resources = (a: DesiredApp): Action => ({ kind: "setResources", app: a.app, resources: a.resources });
const domains = (a: DesiredApp): Action => ({ kind: "setDomains", app: a.app, domains: a.domains });
const deploy = (a: DesiredApp): Action => ({ kind: "deployImage", app: a.app, image: a.image });
const tls = (a: DesiredApp): Action[] => (a.tls ? [{ kind: "enableTls", app: a.app }] : []);
const simple = (kind: "start" | "stop" | "restart" | "destroyApp") => (a: DesiredApp): Action => ({ kind, app: a.app });
const [start, stop, restart, destroy] = [simple("start"), simple("stop"), simple("restart"), simple("destroyApp")];
const backup = (a: DesiredApp): Action[] => (a.storage ? [{ kind: "backup", app: a.app, storage: a.storage, backupType: "pre_deprovision", backupId: null }] : []);
const destroyStorage = (a: DesiredApp): Action[] => (a.storage ? [{ kind: "destroyStorage", app: a.app, storage: a.storage }] : []);
const provision = (a: DesiredApp): Action[] => [create(a), ...storage(a), config(a), resources(a), domains(a), deploy(a), ...tls(a)];
const order = (d: DesiredInstance): DesiredApp[] => COMPONENTS.map((c) => app(c, d));
const reverse = (d: DesiredInstance): DesiredApp[] => order(d).reverse();
const [matrix, backend, frontend] = order(RUNNING) as [DesiredApp, DesiredApp, DesiredApp];

function input(desired: DesiredInstance, observed: Map<string, ObservedApp>, over: Partial<PlanInput> = {}): PlanInput {
  return { desired, observed, backupCompleted: false, restart: [], ...over };
}

// ---- an in-test model of a Dokku host, used to apply plans ----

/** `stale`: config, limits or mounts changed since the containers were made (Dokku applies them on the next start). */
interface ModelApp { stale: boolean; deployed: boolean; running: boolean; specHash: string | null; domains: string[]; mounts: string[]; resources: ResourceLimits | null; image: string | null; tls: boolean }

class ModelHost {
  readonly apps = new Map<string, ModelApp>();
  readonly storage = new Set<string>();
  readonly backups = new Set<string>();

  apply(action: Action): void {
    if (action.kind === "createApp") {
      if (this.apps.has(action.app)) throw new Error(`apps:create on existing ${action.app}: the plan must skip it`);
      this.apps.set(action.app, { stale: false, deployed: false, running: false, specHash: null, domains: [], mounts: [], resources: null, image: null, tls: false });
      return;
    }
    if (action.kind === "backup") return void this.backups.add(action.storage.entry);
    if (action.kind === "restore") throw new Error("plan never emits a restore: restores are requested work (archive-work.ts)");
    if (action.kind === "destroyStorage") {
      if (!this.backups.has(action.storage.entry)) throw new Error(`storage ${action.storage.entry} destroyed without a backup`);
      return void this.storage.delete(action.storage.entry);
    }
    if (action.kind === "destroyApp") {
      const unsaved = (this.apps.get(action.app)?.mounts ?? []).filter((m) => !this.backups.has(m.split(":")[0]?.split("/").pop() ?? ""));
      if (unsaved.length > 0) throw new Error(`app ${action.app} destroyed with data never backed up`);
      return void this.apps.delete(action.app);
    }
    const a = this.apps.get(action.app);
    if (!a) throw new Error(`${action.kind} on missing app ${action.app}`);
    this.mutate(a, action);
  }

  private mutate(a: ModelApp, action: Exclude<Action, { kind: "createApp" | "backup" | "restore" | "destroyApp" | "destroyStorage" }>): void {
    switch (action.kind) {
      case "ensureStorage": {
        this.storage.add(action.storage.entry);
        const m = `/var/lib/dokku/data/storage/${action.storage.entry}:${action.storage.mountPath}`;
        if (!a.mounts.includes(m)) Object.assign(a, { mounts: [...a.mounts, m], stale: a.deployed });
        return;
      }
      case "setConfig": return void Object.assign(a, { specHash: action.env[SPEC_HASH_ENV] ?? null, stale: a.deployed });
      case "setResources": return void Object.assign(a, { resources: action.resources, stale: a.deployed });
      case "setDomains": return void (a.domains = [...action.domains]);
      // Like git:from-image: the same image again is "No changes detected", so nothing restarts.
      case "deployImage": return void Object.assign(a, a.deployed && a.image === action.image ? {} : { image: action.image, deployed: true, running: true, stale: false });
      case "enableTls": return void (a.tls = true);
      case "start": return void Object.assign(a, a.running ? {} : { running: a.deployed, stale: false });
      case "restart": return void Object.assign(a, { running: a.deployed, stale: false });
      case "stop": return void (a.running = false);
    }
  }

  observed(shallow: ReadonlySet<string> = new Set()): Map<string, ObservedApp> {
    return new Map([...this.apps].map(([name, a]) => {
      const base = { app: name, deployed: a.deployed, running: a.running };
      return [name, shallow.has(name) ? base : { ...base, deep: { specHash: a.specHash, domains: [...a.domains], mounts: [...a.mounts], resources: a.resources, image: a.image, tls: a.tls } }];
    }));
  }
}

// ---- table-driven cases ----

interface Case { reason: string; input: PlanInput; want: Action[] }

function runCases(cases: Record<string, Case>): void {
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(plan(tc.input), `\nReason: ${tc.reason}\n`).toEqual(tc.want));
  }
}

describe("plan: provisioning and every crash point", () => {
  const full = order(RUNNING).flatMap(provision);
  const cases: Record<string, Case> = {
    "from nothing": { reason: "matrix, backend, frontend; each create, storage, config, resources, domains, deploy, TLS", input: input(RUNNING, new Map()), want: full },
    converged: { reason: "observe shows everything done: nothing to do", input: input(RUNNING, all(RUNNING)), want: [] },
  };
  // Crash after every step: apply the first i actions to a model host, then plan again.
  for (let i = 1; i < full.length; i++) {
    const host = new ModelHost();
    full.slice(0, i).forEach((a) => host.apply(a));
    const step = full[i - 1] as Action;
    cases[`crash after step ${i}: ${step.kind} ${step.app}`] = {
      reason: "the next pass resumes exactly where the crash stopped: no step repeated, none skipped",
      input: input(RUNNING, host.observed()),
      want: full.slice(i),
    };
  }
  runCases(cases);
});

describe("plan: pause, resume, tier change, health restart", () => {
  const stoppedAll = all(RUNNING, { running: false });
  const proDesired = want("running", { sub: PRO });
  runCases({
    pause: { reason: "stopped phase stops every component, frontend first", input: input(STOPPED, all(STOPPED)), want: reverse(STOPPED).map(stop) },
    "pause, partly stopped": { reason: "only what still runs is stopped", input: input(STOPPED, withApp(all(STOPPED), converged(app("frontend", STOPPED), { running: false }))), want: [stop(app("backend", STOPPED)), stop(app("matrix", STOPPED))] },
    "paused and nothing exists": { reason: "missing apps are not created while stopped: nothing would run", input: input(STOPPED, new Map()), want: [] },
    "paused with stale config": { reason: "a stopped instance is not re-rendered; resume does it", input: input(want("stopped", { sub: PRO }), all(STOPPED, { running: false })), want: [] },
    resume: { reason: "running phase starts stopped components in provisioning order", input: input(RUNNING, stoppedAll), want: order(RUNNING).map(start) },
    "resume after a tier change": { reason: "re-render before starting; start makes new containers with the new config", input: input(proDesired, all(RUNNING, { running: false })), want: order(proDesired).flatMap((a) => [config(a), resources(a), start(a)]) },
    "tier change": { reason: "config and resources re-rendered, then restart to apply them", input: input(proDesired, all(RUNNING)), want: order(proDesired).flatMap((a) => [config(a), resources(a), restart(a)]) },
    "health restart": { reason: "the prober asked to restart the backend", input: input(RUNNING, all(RUNNING), { restart: ["backend"] }), want: [restart(backend)] },
    "health restart of a stopped component": { reason: "a stopped component is started, once", input: input(RUNNING, withApp(all(RUNNING), converged(backend, { running: false })), { restart: ["backend"] }), want: [start(backend)] },
    "health restart while stopped": { reason: "nothing runs, nothing to restart", input: input(STOPPED, all(STOPPED, { running: false }), { restart: ["backend"] }), want: [] },
    "reconcile paused": { reason: "observe only, even with everything missing", input: input(want("running", { paused: true }), new Map(), { restart: ["backend"] }), want: [] },
    "tls off": { reason: "sandbox domains get no certificate", input: input(want("running", { tls: false }), new Map()), want: order(want("running", { tls: false })).flatMap(provision) },
  });
});

describe("plan: drift", () => {
  const base = all(RUNNING);
  runCases({
    "app deleted by hand": { reason: "recreated in full", input: input(RUNNING, without(base, backend.app)), want: provision(backend) },
    "config edited on the host": { reason: "put back, then restart so it takes effect", input: input(RUNNING, withApp(base, converged(backend, {}, { specHash: "edited" }))), want: [config(backend), restart(backend)] },
    "config cleared on the host": { reason: "no hash at all is drift too", input: input(RUNNING, withApp(base, converged(matrix, {}, { specHash: null }))), want: [config(matrix), restart(matrix)] },
    "app stopped by hand": { reason: "started again", input: input(RUNNING, withApp(base, converged(frontend, { running: false }))), want: [start(frontend)] },
    "domains changed": { reason: "domains only: nginx reloads, no restart", input: input(RUNNING, withApp(base, converged(frontend, {}, { domains: ["evil.example"] }))), want: [domains(frontend)] },
    "domains reordered": { reason: "domains compare as sets", input: input(RUNNING, withApp(base, converged(frontend, {}, { domains: [...frontend.domains].reverse() }))), want: [] },
    "resources changed": { reason: "limits re-applied and restarted", input: input(RUNNING, withApp(base, converged(backend, {}, { resources: { memoryMb: 1, cpus: 1 } }))), want: [resources(backend), restart(backend)] },
    "storage unmounted": { reason: "re-mounted and restarted (mounts apply on restart)", input: input(RUNNING, withApp(base, converged(matrix, {}, { mounts: [] }))), want: [...storage(matrix), restart(matrix)] },
    "another image deployed": { reason: "deploy makes new containers: no extra restart", input: input(RUNNING, withApp(base, converged(backend, {}, { image: "ghcr.io/other/img:1" }))), want: [deploy(backend)] },
    "certificate missing": { reason: "TLS enabled again", input: input(RUNNING, withApp(base, converged(frontend, {}, { tls: false }))), want: tls(frontend) },
    "shallow observe only": {
      reason: "unknown fields: idempotent setters, a deploy (no-op with the same image) and a restart so config applies",
      input: input(RUNNING, withApp(base, { app: backend.app, deployed: true, running: true })),
      want: [...storage(backend), config(backend), resources(backend), domains(backend), deploy(backend), restart(backend), ...tls(backend)],
    },
    "stopped and config changed": { reason: "start (new containers) instead of restart", input: input(RUNNING, withApp(base, converged(backend, { running: false }, { specHash: "old" }))), want: [config(backend), start(backend)] },
  });
});

describe("plan: teardown", () => {
  const [f, b, m] = reverse(GONE) as [DesiredApp, DesiredApp, DesiredApp];
  const entries = (...a: DesiredApp[]) => new Set(a.flatMap((x) => (x.storage ? [x.storage.entry] : [])));
  runCases({
    "backup first": { reason: "stop for a consistent copy, back up every storage; nothing destructive yet", input: input(GONE, all(GONE)), want: [stop(f), stop(b), stop(m), ...backup(b), ...backup(m)] },
    "backup while already stopped": { reason: "only backups", input: input(GONE, all(GONE, { running: false })), want: [...backup(b), ...backup(m)] },
    "after backup": { reason: "destroy apps, then storage", input: input(GONE, all(GONE, { running: false }), { backupCompleted: true }), want: [destroy(f), destroy(b), destroy(m), ...destroyStorage(b), ...destroyStorage(m)] },
    "after backup, still running": { reason: "stop before destroying", input: input(GONE, all(GONE), { backupCompleted: true }), want: [stop(f), stop(b), stop(m), destroy(f), destroy(b), destroy(m), ...destroyStorage(b), ...destroyStorage(m)] },
    "frontend already gone": { reason: "partial teardown continues", input: input(GONE, without(all(GONE, { running: false }), f.app), { backupCompleted: true }), want: [destroy(b), destroy(m), ...destroyStorage(b), ...destroyStorage(m)] },
    "apps gone, one entry left": { reason: "crash between destroyApp and destroyStorage, seen via storageEntries", input: input(GONE, new Map(), { backupCompleted: true, storageEntries: entries(m) }), want: destroyStorage(m) },
    "apps gone, entry left, no backup": { reason: "data without a backup is backed up before anything is destroyed", input: input(GONE, new Map(), { storageEntries: entries(m) }), want: backup(m) },
    "only the stateless app left": { reason: "nothing to back up: destroy at once", input: input(GONE, new Map([[f.app, converged(f, { running: false })]]), { storageEntries: new Set() }), want: [destroy(f)] },
    "all gone": { reason: "teardown converged", input: input(GONE, new Map(), { backupCompleted: true, storageEntries: new Set() }), want: [] },
    "all gone, entries unknown": { reason: "without storageEntries an entry is assumed gone with its app", input: input(GONE, new Map(), { backupCompleted: true }), want: [] },
  });

  test("no destructive action in any plan before the backup completed", () => {
    const destructive = new Set(["destroyApp", "destroyStorage"]);
    for (const observed of [all(GONE), all(GONE, { running: false }), without(all(GONE), f.app)]) {
      expect(plan(input(GONE, observed)).filter((a) => destructive.has(a.kind))).toEqual([]);
    }
  });
});

describe("orphans", () => {
  const orphan: ObservedApp = { app: "acme-redis", deployed: true, running: true };
  const foreign: ObservedApp = { app: "acme-api-backend", deployed: true, running: true };
  runCases({
    "orphan reported, not destroyed": { reason: "destroying needs an explicit opt-in", input: input(RUNNING, withApp(all(RUNNING), orphan)), want: [] },
    "orphan destroyed when opted in": { reason: "allowOrphanDestroy", input: input(RUNNING, withApp(all(RUNNING), orphan), { allowOrphanDestroy: true }), want: [{ kind: "destroyApp", app: "acme-redis" }] },
    "another instance's app": { reason: "acme-api-backend belongs to subdomain acme-api, never to acme", input: input(RUNNING, withApp(all(RUNNING), foreign), { allowOrphanDestroy: true }), want: [] },
  });

  const cases: Record<string, { reason: string; apps: string[]; known: string[]; want: string[] }> = {
    "leaked app": { reason: "looks like ours, no instance row", apps: ["acme-backend", "zeta-matrix"], known: ["acme-backend"], want: ["zeta-matrix"] },
    "not ours": { reason: "other apps on the host are left alone", apps: ["grafana", "acme-worker", "acme-backend"], known: ["acme-backend"], want: [] },
    "sorted and deduplicated": { reason: "stable output", apps: ["b-frontend", "a-matrix", "b-frontend"], known: [], want: ["a-matrix", "b-frontend"] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(`findOrphans: ${name}`, () => expect(findOrphans(tc.apps, new Set(tc.known)), tc.reason).toEqual(tc.want));
  }
  test("findOrphans with a custom pattern", () => expect(findOrphans(["x-worker"], new Set(), /-worker$/)).toEqual(["x-worker"]));
});

describe("driftKinds and describePlan", () => {
  const base = all(RUNNING);
  const cases: Record<string, { reason: string; desired: DesiredInstance; observed: Map<string, ObservedApp>; want: string[] }> = {
    none: { reason: "converged", desired: RUNNING, observed: base, want: [] },
    missing: { reason: "deleted by hand", desired: RUNNING, observed: without(base, matrix.app), want: ["app_missing"] },
    several: { reason: "each kind once", desired: RUNNING, observed: withApp(withApp(base, converged(backend, { running: false }, { specHash: "x", domains: [] })), converged(frontend, {}, { resources: null, image: "i:2" })), want: ["app_stopped", "config_changed", "domains_changed", "image_changed", "resources_changed"] },
    "running while stopped": { reason: "someone started a suspended app", desired: STOPPED, observed: all(STOPPED), want: ["app_running"] },
    orphan: { reason: "an extra app of this instance", desired: RUNNING, observed: withApp(base, { app: "acme-redis", deployed: false, running: false }), want: ["orphan_app"] },
    shallow: { reason: "unknown fields are not reported as drift", desired: RUNNING, observed: withApp(base, { app: backend.app, deployed: true, running: true }), want: [] },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(`driftKinds: ${name}`, () => expect(driftKinds(tc.desired, tc.observed), tc.reason).toEqual(tc.want));
  }

  test("describePlan: one line per action, config keys but never values", () => {
    const actions = [...provision(backend), stop(backend), restart(backend), start(backend), ...backup(backend), destroy(backend), ...destroyStorage(backend)];
    const lines = describePlan(actions);
    expect(lines).toHaveLength(actions.length);
    const text = lines.join("\n");
    for (const key of ["MINDROOM_ADMIN_TOKEN", "MAX_AGENTS", SPEC_HASH_ENV]) expect(text).toContain(key);
    for (const value of Object.values(backend.env)) {
      if (value.length >= 8 && !value.includes(".")) expect(text, "no config value leaks").not.toContain(value);
    }
  });
});

// ---- property: one pass converges from any partial state ----

const appState = fc.record({
  exists: fc.boolean(),
  shallow: fc.boolean(),
  deployed: fc.boolean(),
  running: fc.boolean(),
  config: fc.constantFrom("right", "wrong", "none"),
  domains: fc.boolean(),
  mount: fc.boolean(),
  resources: fc.constantFrom("right", "wrong", "none"),
  image: fc.constantFrom("right", "wrong", "none"),
  tls: fc.boolean(),
  entryWithoutApp: fc.boolean(),
});
type AppState = typeof appState extends fc.Arbitrary<infer T> ? T : never;

function seed(host: ModelHost, a: DesiredApp, s: AppState): void {
  if (!s.exists) {
    if (a.storage && s.entryWithoutApp) host.storage.add(a.storage.entry);
    return;
  }
  const pick = <T,>(v: string, right: T, wrong: T, none: T): T => (v === "right" ? right : v === "wrong" ? wrong : none);
  if (a.storage && s.mount) host.storage.add(a.storage.entry);
  host.apps.set(a.app, {
    stale: false,
    deployed: s.deployed,
    running: s.deployed && s.running,
    specHash: pick(s.config, a.specHash, "stale", null),
    domains: s.domains ? [...a.domains] : ["old.example"],
    mounts: s.mount ? mount(a) : [],
    resources: pick(s.resources, a.resources, { memoryMb: 1, cpus: 0.1 }, null),
    image: s.deployed ? pick(s.image, a.image, "old/image:1", null) : null,
    tls: s.tls,
  });
}

describe("property: plans converge", () => {
  test("applying the plan to any partial state leaves nothing to do (teardown: after the backup pass)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<Phase>("running", "stopped", "deprovisioned"),
        fc.tuple(appState, appState, appState),
        fc.boolean(),
        fc.constantFrom<Component[]>([], ["backend"], ["matrix", "frontend"]),
        (phase, states, entriesKnown, restartReq) => {
          const desired = want(phase);
          const host = new ModelHost();
          const apps = order(desired);
          apps.forEach((a, i) => seed(host, a, states[i] as AppState));
          const shallow = new Set(apps.filter((a, i) => (states[i] as AppState).shallow).map((a) => a.app));
          let backupCompleted = false;
          const pass = (first: boolean): Action[] => {
            const actions = plan({ desired, observed: host.observed(first ? shallow : new Set()), backupCompleted, restart: first ? restartReq : [], storageEntries: entriesKnown ? new Set(host.storage) : undefined });
            if (!backupCompleted && actions.some((a) => a.kind === "backup")) {
              expect(actions.filter((a) => a.kind === "destroyApp" || a.kind === "destroyStorage"), "nothing destructive before the backup").toEqual([]);
            }
            actions.forEach((a) => host.apply(a));
            if (actions.some((a) => a.kind === "backup")) backupCompleted = true;
            return actions;
          };
          pass(true);
          if (phase === "deprovisioned") pass(false);
          expect(pass(false), `phase ${phase}: converged`).toEqual([]);
          if (phase === "running") expect([...host.apps.values()].filter((a) => a.stale), "every change took effect").toEqual([]);
          if (phase === "stopped") expect([...host.apps.values()].some((a) => a.running)).toBe(false);
          if (phase === "deprovisioned") {
            expect(host.apps.size).toBe(0);
            if (entriesKnown) expect(host.storage.size).toBe(0);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("drift kinds and their metric", () => {
  test("every kind driftKinds can report is zero-initialised by the metrics", async () => {
    const { DRIFT_KINDS } = await import("../../src/reconciler/metrics.ts");
    const source = await import("node:fs/promises").then((fs) => fs.readFile("src/reconciler/plan.ts", "utf8"));
    const reported = new Set([...source.matchAll(/kinds\.(?:add|push)\("([a-z_]+)"\)/g)].map((m) => m[1]));
    expect(reported.size).toBeGreaterThan(5);
    expect([...reported].sort()).toEqual([...DRIFT_KINDS].sort());
  });
});
