import fc from "fast-check";
import { describe, expect, test } from "vitest";

import { TerminalError } from "../../src/errors.ts";
import {
  appSpecHash,
  billingPhase,
  componentResources,
  DEFAULT_GRACE_PERIOD_MS,
  DEFAULT_RETENTION_PERIOD_MS,
  desiredInstance,
  type DesiredOptions,
  effectivePhase,
  SPEC_HASH_ENV,
  tierEnvironment,
} from "../../src/reconciler/desired.ts";
import { canonicalJson, contentHash } from "../../src/reconciler/hash.ts";
import { deriveSecret, instanceSecrets } from "../../src/reconciler/secrets.ts";
import { DEFAULT_TEMPLATE, imageAllowed, imageRepository, parseTemplate, templateRepositories } from "../../src/reconciler/template.ts";
import { type Component, type DesiredApp, type InstanceState, type Phase, SUBSCRIPTION_STATUSES, type SubscriptionState } from "../../src/reconciler/types.ts";

const NOW = new Date("2026-03-01T12:00:00.000Z");
const DAY = 86_400_000;
const ago = (ms: number): Date => new Date(NOW.getTime() - ms);
const MASTER_KEY = "test-master-key-0123456789abcdef";

const OPTS: DesiredOptions = {
  now: NOW,
  gracePeriodMs: DEFAULT_GRACE_PERIOD_MS,
  retentionPeriodMs: DEFAULT_RETENTION_PERIOD_MS,
  baseDomain: "mindroom.test",
  masterKey: MASTER_KEY,
  template: parseTemplate(),
  imageAllowlist: templateRepositories(parseTemplate()),
  tls: true,
};

function sub(overrides: Partial<SubscriptionState> = {}): SubscriptionState {
  return {
    id: "sub-1",
    accountId: "acct-1",
    tier: "starter",
    status: "active",
    pastDueSince: null,
    canceledAt: null,
    cancelAtPeriodEnd: false,
    currentPeriodEnd: null,
    region: null,
    limits: { maxAgents: 3, maxMessagesPerDay: 1000, maxStorageGb: 5, maxPlatforms: 3, maxTeamMembers: null },
    features: { voice: false, "custom-domains": true },
    resources: { memoryMb: 1024, cpus: 1 },
    ...overrides,
  };
}

function inst(overrides: Partial<InstanceState> = {}): InstanceState {
  return { id: "inst-1", subdomain: "acme", desiredState: null, reconcilePaused: false, overrides: {}, generation: 1, ...overrides };
}

function appOf(apps: readonly DesiredApp[], component: Component): DesiredApp {
  const app = apps.find((a) => a.component === component);
  if (!app) throw new Error(`no ${component}`);
  return app;
}

describe("billingPhase", () => {
  const cases: Record<string, { reason: string; sub: SubscriptionState; want: { phase: Phase | "none"; changesAt: Date | null } }> = {
    trialing: { reason: "a trial is safe to provision", sub: sub({ status: "trialing" }), want: { phase: "running", changesAt: null } },
    active: { reason: "good standing runs", sub: sub({ status: "active" }), want: { phase: "running", changesAt: null } },
    "active, cancel at period end": {
      reason: "cancel_at_period_end keeps running until Stripe ends the subscription",
      sub: sub({ cancelAtPeriodEnd: true, currentPeriodEnd: ago(-3 * DAY) }),
      want: { phase: "running", changesAt: null },
    },
    "past_due inside grace": {
      reason: "past_due keeps running for the grace period and requeues at its end",
      sub: sub({ status: "past_due", pastDueSince: ago(2 * DAY) }),
      want: { phase: "running", changesAt: new Date(ago(2 * DAY).getTime() + DEFAULT_GRACE_PERIOD_MS) },
    },
    "past_due exactly at the grace boundary": {
      reason: "the boundary itself is outside the grace period",
      sub: sub({ status: "past_due", pastDueSince: ago(DEFAULT_GRACE_PERIOD_MS) }),
      want: { phase: "stopped", changesAt: null },
    },
    "past_due outside grace": {
      reason: "after the grace period the instance is suspended",
      sub: sub({ status: "past_due", pastDueSince: ago(10 * DAY) }),
      want: { phase: "stopped", changesAt: null },
    },
    "past_due without past_due_since": {
      reason: "missing bookkeeping never suspends a customer; the grace clock has not started",
      sub: sub({ status: "past_due", pastDueSince: null }),
      want: { phase: "running", changesAt: null },
    },
    unpaid: { reason: "Stripe says revoke access; data kept", sub: sub({ status: "unpaid" }), want: { phase: "stopped", changesAt: null } },
    paused: { reason: "a paused trial is suspended", sub: sub({ status: "paused" }), want: { phase: "stopped", changesAt: null } },
    incomplete: { reason: "no instance before the first payment", sub: sub({ status: "incomplete" }), want: { phase: "none", changesAt: null } },
    "canceled inside retention": {
      reason: "canceled stops at once and is torn down when retention ends",
      sub: sub({ status: "canceled", canceledAt: ago(5 * DAY) }),
      want: { phase: "stopped", changesAt: new Date(ago(5 * DAY).getTime() + DEFAULT_RETENTION_PERIOD_MS) },
    },
    "canceled after retention": {
      reason: "retention over: deprovision",
      sub: sub({ status: "canceled", canceledAt: ago(31 * DAY) }),
      want: { phase: "deprovisioned", changesAt: null },
    },
    "canceled without canceled_at": {
      reason: "never tear down without a known cancel time",
      sub: sub({ status: "canceled", canceledAt: null }),
      want: { phase: "stopped", changesAt: null },
    },
    "incomplete_expired inside retention": {
      reason: "treated like canceled",
      sub: sub({ status: "incomplete_expired", canceledAt: ago(DAY) }),
      want: { phase: "stopped", changesAt: new Date(ago(DAY).getTime() + DEFAULT_RETENTION_PERIOD_MS) },
    },
    "incomplete_expired after retention": {
      reason: "treated like canceled",
      sub: sub({ status: "incomplete_expired", canceledAt: ago(40 * DAY) }),
      want: { phase: "deprovisioned", changesAt: null },
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => {
      const got = billingPhase(tc.sub, OPTS);
      expect({ phase: got.phase, changesAt: got.changesAt }, tc.reason).toEqual(tc.want);
      expect(got.reason.length, "every phase says why").toBeGreaterThan(0);
    });
  }

  test("every Stripe status is covered by the table above", () => {
    const covered = new Set(Object.values(cases).map((tc) => tc.sub.status));
    expect([...covered].sort()).toEqual([...SUBSCRIPTION_STATUSES].sort());
  });
});

describe("effectivePhase: desired_state may only lower", () => {
  const billing = (phase: Phase | "none", changesAt: Date | null = null) => ({ phase, reason: "billing", changesAt });
  const cases: Record<string, { reason: string; billing: ReturnType<typeof billing>; override: Phase | null; want: Phase }> = {
    "no override": { reason: "billing decides", billing: billing("running"), override: null, want: "running" },
    "running → stopped": { reason: "support may stop a paying instance", billing: billing("running"), override: "stopped", want: "stopped" },
    "running → deprovisioned": { reason: "deprovision_instance() lowers to teardown", billing: billing("running"), override: "deprovisioned", want: "deprovisioned" },
    "stopped → deprovisioned": { reason: "lowering further is allowed", billing: billing("stopped"), override: "deprovisioned", want: "deprovisioned" },
    "stopped, override running": { reason: "an override never raises above billing", billing: billing("stopped"), override: "running", want: "stopped" },
    "deprovisioned, override running": { reason: "never resurrect what billing tears down", billing: billing("deprovisioned"), override: "running", want: "deprovisioned" },
    "deprovisioned, override stopped": { reason: "stopped is above deprovisioned: ignored", billing: billing("deprovisioned"), override: "stopped", want: "deprovisioned" },
    "none, override running": { reason: "no paid subscription yet: stays stopped", billing: billing("none"), override: "running", want: "stopped" },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => expect(effectivePhase(tc.billing, tc.override).phase, tc.reason).toBe(tc.want));
  }

  test("a lowered phase keeps the billing requeue only while it can still go lower", () => {
    const at = ago(-DAY);
    expect(effectivePhase(billing("stopped", at), "stopped").changesAt, "same phase keeps the retention requeue").toEqual(at);
    expect(effectivePhase(billing("running", at), "deprovisioned").changesAt, "nothing is lower than deprovisioned").toBeNull();
  });
});

describe("desiredInstance", () => {
  test("an incomplete subscription with an instance row wants it stopped", () => {
    const got = desiredInstance(sub({ status: "incomplete" }), inst(), OPTS);
    expect(got.phase).toBe("stopped");
  });

  test("override applies to the whole instance, and paused is passed through", () => {
    const got = desiredInstance(sub(), inst({ desiredState: "stopped", reconcilePaused: true }), OPTS);
    expect(got).toMatchObject({ phase: "stopped", paused: true, instanceId: "inst-1", subscriptionId: "sub-1", tier: "starter" });
    expect(got.reason).toMatch(/paused/);
  });

  test("apps: deterministic names, template ports and health paths, domains, storage, tls", () => {
    const got = desiredInstance(sub(), inst(), OPTS);
    expect(got.apps.map((a) => a.app)).toEqual(["acme-matrix", "acme-backend", "acme-frontend"]);
    const want: Record<Component, { port: number; healthPath: string; domains: string[]; storage: unknown }> = {
      matrix: { port: 8008, healthPath: "/_matrix/client/versions", domains: ["acme-matrix.mindroom.test"], storage: { entry: "acme-matrix-data", mountPath: "/data" } },
      backend: { port: 8765, healthPath: "/api/health", domains: ["acme-api.mindroom.test"], storage: { entry: "acme-backend-data", mountPath: "/data" } },
      frontend: { port: 3003, healthPath: "/", domains: ["acme.mindroom.test"], storage: null },
    };
    for (const app of got.apps) {
      expect(app, app.component).toMatchObject({ ...want[app.component], image: DEFAULT_TEMPLATE[app.component].image, tls: true });
    }
  });

  test("tier limits and features become environment, the tier budget becomes resources", () => {
    const s = sub();
    const got = desiredInstance(s, inst(), OPTS);
    for (const component of ["backend", "frontend"] as const) {
      expect(appOf(got.apps, component).env, component).toMatchObject(tierEnvironment(s));
    }
    const backend = appOf(got.apps, "backend").env;
    expect(backend).toMatchObject({ MINDROOM_TIER: "starter", MAX_AGENTS: "3", MAX_MESSAGES_PER_DAY: "1000", MAX_STORAGE_GB: "5", MAX_PLATFORMS: "3" });
    expect(backend, "null means unlimited").toMatchObject({ MAX_TEAM_MEMBERS: "unlimited" });
    expect(backend, "feature names are upper-cased identifiers").toMatchObject({ FEATURE_VOICE: "false", FEATURE_CUSTOM_DOMAINS: "true" });
    expect(appOf(got.apps, "matrix").env.MAX_AGENTS, "the homeserver does not carry product limits").toBeUndefined();
    for (const app of got.apps) {
      expect(app.resources, app.component).toEqual(componentResources(s.resources, OPTS.template[app.component].resourceShare));
    }
    const total = got.apps.reduce((sum, a) => sum + a.resources.memoryMb, 0);
    expect(total, "the default shares keep the instance within its tier").toBeLessThanOrEqual(s.resources.memoryMb);
  });

  test("URLs follow the domains, https only with TLS", () => {
    const https = appOf(desiredInstance(sub(), inst(), OPTS).apps, "backend").env;
    expect(https).toMatchObject({
      MINDROOM_PUBLIC_URL: "https://acme.mindroom.test",
      MATRIX_HOMESERVER: "https://acme-matrix.mindroom.test",
      MATRIX_SERVER_NAME: "acme-matrix.mindroom.test",
      MINDROOM_INSTANCE_ID: "inst-1",
    });
    const sandbox = desiredInstance(sub(), inst(), { ...OPTS, baseDomain: "mindroom.localhost", tls: false });
    expect(appOf(sandbox.apps, "backend").env.MINDROOM_PUBLIC_URL).toBe("http://acme.mindroom.localhost");
    expect(sandbox.apps.every((a) => !a.tls)).toBe(true);
  });

  test("secrets: stable, different per instance and purpose, never the master key, only where used", () => {
    const a1 = desiredInstance(sub(), inst(), OPTS);
    const a2 = desiredInstance(sub(), inst(), OPTS);
    const b = desiredInstance(sub(), inst({ id: "inst-2", subdomain: "beta" }), OPTS);
    const secretsA = instanceSecrets(MASTER_KEY, "inst-1");
    const backendA = appOf(a1.apps, "backend").env;
    expect(backendA.MINDROOM_ADMIN_TOKEN).toBe(secretsA.adminToken);
    expect(backendA.MATRIX_REGISTRATION_SHARED_SECRET).toBe(secretsA.matrixRegistrationSharedSecret);
    expect(appOf(a1.apps, "matrix").env.MATRIX_REGISTRATION_SHARED_SECRET).toBe(secretsA.matrixRegistrationSharedSecret);
    expect(appOf(a2.apps, "backend").env, "stable across reconciles").toEqual(backendA);
    expect(appOf(b.apps, "backend").env.MINDROOM_ADMIN_TOKEN, "per instance").not.toBe(backendA.MINDROOM_ADMIN_TOKEN);
    expect(secretsA.adminToken, "per purpose").not.toBe(secretsA.matrixRegistrationSharedSecret);
    expect(secretsA.adminToken).toMatch(/^[0-9a-f]{64}$/);
    for (const app of a1.apps) {
      expect(Object.values(app.env), `${app.component} never carries the master key`).not.toContain(MASTER_KEY);
    }
    expect(appOf(a1.apps, "frontend").env.MINDROOM_ADMIN_TOKEN, "least privilege").toBeUndefined();
    expect(deriveSecret(`${MASTER_KEY}x`, "inst-1", "admin-token"), "another master key rotates").not.toBe(secretsA.adminToken);
  });

  test("a short master key is refused without echoing it", () => {
    const fn = () => desiredInstance(sub(), inst(), { ...OPTS, masterKey: "short-key" });
    expect(fn).toThrow(TerminalError);
    expect(fn).not.toThrow(/short-key/);
  });

  test("spec hash: carried as MINDROOM_SPEC_HASH, excludes itself, stable, changes with the tier", () => {
    const a = desiredInstance(sub(), inst(), OPTS);
    for (const app of a.apps) {
      expect(app.env[SPEC_HASH_ENV]).toBe(app.specHash);
      expect(appSpecHash(app), "recomputable from the app itself").toBe(app.specHash);
      expect(appSpecHash({ ...app, env: { ...app.env, [SPEC_HASH_ENV]: "other" } }), "its own value is not part of it").toBe(app.specHash);
      expect(app.specHash).toMatch(/^[0-9a-f]{32}$/);
    }
    expect(desiredInstance(sub(), inst(), OPTS), "same input, same answer").toEqual(a);
    const pro = desiredInstance(sub({ tier: "professional", resources: { memoryMb: 2048, cpus: 2 } }), inst(), OPTS);
    expect(pro.specHash).not.toBe(a.specHash);
    for (const component of ["backend", "frontend"] as const) {
      expect(appOf(pro.apps, component).specHash, component).not.toBe(appOf(a.apps, component).specHash);
    }
    expect(desiredInstance(sub(), inst({ desiredState: "stopped" }), OPTS).specHash, "phase is not part of the spec").toBe(a.specHash);
  });

  test("canonical JSON ignores key order", () => {
    expect(canonicalJson({ b: 1, a: { d: [2, 1], c: null } })).toBe(canonicalJson({ a: { c: null, d: [2, 1] }, b: 1 }));
    expect(contentHash({ a: 1, b: 2 })).toBe(contentHash({ b: 2, a: 1 }));
  });
});

describe("operator overrides (instance_overrides.components)", () => {
  test("a valid image and env override is applied to that component only", () => {
    const overrides = { backend: { image: "ghcr.io/mindroom-ai/mindroom-backend:v0.5.0", env: { LOG_FORMAT: "json" } } };
    const got = desiredInstance(sub(), inst({ overrides }), OPTS);
    expect(appOf(got.apps, "backend")).toMatchObject({ image: "ghcr.io/mindroom-ai/mindroom-backend:v0.5.0", env: { LOG_FORMAT: "json" } });
    expect(appOf(got.apps, "frontend").image).toBe(DEFAULT_TEMPLATE.frontend.image);
  });

  const bad: Record<string, { reason: string; overrides: Record<string, unknown>; field: string }> = {
    "image with a space": { reason: "images go unquoted to git:from-image", overrides: { backend: { image: "evil image;rm" } }, field: "instance_overrides.components.backend.image" },
    "image not a string": { reason: "types are checked", overrides: { matrix: { image: 42 } }, field: "instance_overrides.components.matrix.image" },
    "unknown component": { reason: "a typo must not silently do nothing", overrides: { worker: { image: "x:1" } }, field: "instance_overrides.components" },
    "unknown field": { reason: "strict inside a component", overrides: { frontend: { imag: "x:1" } }, field: "instance_overrides.components.frontend" },
    "reserved env key": { reason: "an override cannot lift tier limits", overrides: { backend: { env: { MAX_AGENTS: "999" } } }, field: "instance_overrides.components.backend.env.MAX_AGENTS" },
    "controller namespace": { reason: "MINDROOM_* belongs to the controller", overrides: { frontend: { env: { MINDROOM_SPEC_HASH: "x" } } }, field: "instance_overrides.components.frontend.env.MINDROOM_SPEC_HASH" },
    "image off the allow-list": { reason: "only the operator's repositories are deployed", overrides: { backend: { image: "docker.io/attacker/miner:latest" } }, field: "instance_overrides.components.backend.image" },
    "look-alike repository": { reason: "an exact repository entry is not a prefix", overrides: { backend: { image: "ghcr.io/mindroom-ai/mindroom-backend-evil:v1" } }, field: "IMAGE_ALLOWLIST" },
  };
  for (const [name, tc] of Object.entries(bad)) {
    test(`refused: ${name}`, () => {
      const fn = () => desiredInstance(sub(), inst({ overrides: tc.overrides }), OPTS);
      expect(fn, tc.reason).toThrow(TerminalError);
      expect(fn, "the message names the field").toThrow(tc.field);
      expect(fn, "the message never echoes an env value").not.toThrow(/evil image|999/);
    });
  }

  test("the allow-list admits a registry path, an exact repository with any tag or digest, and nothing else", () => {
    const allow = ["ghcr.io/mindroom-ai/", "registry.example.com:5000/team/app"];
    const yes = ["ghcr.io/mindroom-ai/anything:v1", "ghcr.io/mindroom-ai/x/y@sha256:abc", "registry.example.com:5000/team/app:2", "registry.example.com:5000/team/app"];
    const no = ["ghcr.io/mindroom-ai", "ghcr.io/mindroom-ai-evil/x:1", "registry.example.com:5000/team/app2:1", "docker.io/attacker/miner", "registry.example.com:5000/team"];
    for (const image of yes) expect(imageAllowed(image, allow), image).toBe(true);
    for (const image of no) expect(imageAllowed(image, allow), image).toBe(false);
    expect(imageRepository("registry.example.com:5000/team/app:2@sha256:00")).toBe("registry.example.com:5000/team/app");
  });

  test("a template image outside the allow-list is refused too", () => {
    const opts = { ...OPTS, imageAllowlist: ["ghcr.io/mindroom-ai/"] };
    expect(() => desiredInstance(sub(), inst(), opts)).toThrow(/matrixdotorg\/synapse is not in IMAGE_ALLOWLIST/);
  });

  test("property: nothing a tenant can write into instances.config changes desired state", () => {
    const base = desiredInstance(sub(), inst(), OPTS);
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), (config) => {
        // The row a tenant's provision_instance(..., config) would produce: config is not an input.
        const row = { ...inst(), config } as InstanceState;
        expect(desiredInstance(sub(), row, OPTS)).toEqual(base);
      }),
    );
  });

  test("a bad subdomain is a terminal error", () => {
    expect(() => desiredInstance(sub(), inst({ subdomain: "Acme_Corp" }), OPTS)).toThrow(TerminalError);
    expect(() => desiredInstance(sub(), inst({ subdomain: "a".repeat(40) }), OPTS), "storage entry would exceed 45 characters").toThrow(/storage entry/);
  });
});

describe("parseTemplate", () => {
  test("defaults, and a partial override keeps the other fields", () => {
    expect(parseTemplate()).toEqual(DEFAULT_TEMPLATE);
    const t = parseTemplate({ frontend: { image: "ghcr.io/mindroom-ai/mindroom-frontend:v1.0.0" } });
    expect(t.frontend).toEqual({ ...DEFAULT_TEMPLATE.frontend, image: "ghcr.io/mindroom-ai/mindroom-frontend:v1.0.0" });
    expect(t.backend).toEqual(DEFAULT_TEMPLATE.backend);
  });

  test("default images match the strict image pattern", () => {
    for (const c of Object.values(DEFAULT_TEMPLATE)) expect(c.image).toMatch(/^[A-Za-z0-9._/:@+-]+$/);
  });

  test("bad templates fail at start-up naming the field", () => {
    expect(() => parseTemplate({ backend: { port: 0 } })).toThrow("template.backend.port");
    expect(() => parseTemplate({ matrix: { domain: "matrix.example.com" } }), "a domain must depend on the subdomain").toThrow("template.matrix.domain");
  });
});
