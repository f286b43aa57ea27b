/**
 * The health prober (DESIGN.md section 9): real HTTP requests to each component's health path of
 * every instance that should be running, every `intervalMs`, each instance at its own phase of the
 * interval (so probes spread evenly instead of arriving all at once), at most `concurrency`
 * requests at a time, each bounded by `timeoutMs`. Results go to Postgres (src/state/health.ts);
 * a component failing FAILURE_THRESHOLD probes in a row is reported through `onUnhealthy`, which
 * only enqueues: the reconciler decides about restarts (reconciler/health-policy.ts).
 *
 * Response bodies are never read into memory or logged; only status codes and error codes are kept.
 */
import { type IncomingMessage,request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { performance } from "node:perf_hooks";

import pLimit, { type LimitFunction } from "p-limit";
import type { Sql } from "postgres";
import { Histogram, type Registry } from "prom-client";

import { coerceError } from "../errors.ts";
import { pause } from "../pause.ts";
import {
  aggregate,
  type AggregateHealth,
  consecutiveFailures,
  FAILURE_THRESHOLD,
  nextProbeAt,
  phaseOffsetMs,
} from "../reconciler/health-policy.ts";
import { HEALTH_PROBE_BUCKETS } from "../reconciler/metrics.ts";
import { BASE_DOMAIN_PLACEHOLDER, DEFAULT_TEMPLATE, SUBDOMAIN_PLACEHOLDER } from "../reconciler/template.ts";
import { type Component, COMPONENTS } from "../reconciler/types.ts";
import { listProbeTargets, markRecovered, type ProbeResult, type ProbeTarget, recentProbes, recordResults } from "../state/health.ts";

export const HEALTH_PROBE_METRIC = "mindroom_health_probe_seconds";
export const DEFAULT_HEALTH_INTERVAL_MS = 5 * 60_000;
export const DEFAULT_PROBE_CONCURRENCY = 16;
export const DEFAULT_PROBE_TIMEOUT_MS = 5_000;
/** New and removed instances are noticed at least this often (or every interval, if shorter). */
export const TARGET_REFRESH_MS = 30_000;

/** The logger methods the prober uses (pino's signature). */
export interface ProberLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface HealthProberOptions {
  readonly sql: Sql;
  /** The process's registry; an existing `mindroom_health_probe_seconds` in it is reused. */
  readonly registry: Registry;
  /** Public hostname of a component, e.g. the template's `{subdomain}-api.{baseDomain}`. */
  readonly domainFor: (subdomain: string, component: Component) => string;
  /**
   * Called (synchronously, must not throw; errors are logged) after a round in which components
   * that should run have failed FAILURE_THRESHOLD or more probes in a row since the last restart,
   * once per such round. Meant to enqueue the subscription's key; the queue de-duplicates.
   */
  readonly onUnhealthy: (subscriptionId: string, instanceId: string, components: readonly Component[]) => void;
  readonly logger: ProberLogger;
  /** HEALTH_INTERVAL; default 5 min. */
  readonly intervalMs?: number;
  /** Concurrent HTTP requests; default 16. */
  readonly concurrency?: number;
  /** Per request, connect to end of body; default 5 s. */
  readonly timeoutMs?: number;
  /** Health path of a component; default the default template's. */
  readonly healthPathFor?: (component: Component) => string;
  readonly now?: () => Date;
  /** Called after each round is stored (tests, status refresh). */
  readonly onRound?: (round: ProbeRound) => void;
}

export interface ProbeRound {
  readonly instanceId: string;
  readonly subscriptionId: string;
  readonly checkedAt: Date;
  readonly health: AggregateHealth;
  readonly results: readonly ProbeResult[];
  /** Components reported to onUnhealthy in this round (empty when none). */
  readonly unhealthy: readonly Component[];
}

/** `domainFor` from the default template's domain patterns. */
export function defaultDomainFor(baseDomain: string): (subdomain: string, component: Component) => string {
  return (subdomain, component) =>
    DEFAULT_TEMPLATE[component].domain.replace(SUBDOMAIN_PLACEHOLDER, subdomain).replace(BASE_DOMAIN_PLACEHOLDER, baseDomain);
}

/**
 * Where to send a probe: through the host's ingress with a Host header when the host has one
 * (`http://127.0.0.1:8080` + `Host: sub-api.example.com`), else straight to `https://<domain>`.
 */
export function probeAddress(ingressUrl: string | null, domain: string, path: string): { url: URL; host: string | null } {
  if (ingressUrl) return { url: new URL(path, ingressUrl), host: domain };
  return { url: new URL(path, `https://${domain}`), host: null };
}

interface HttpOutcome {
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly latencyMs: number;
}

/**
 * One GET, bounded by `timeoutMs` from connect to the end of the body (the body is discarded).
 * node:http rather than fetch: fetch forbids setting the Host header. Never rejects.
 */
export function httpProbe(address: { url: URL; host: string | null }, timeoutMs: number): Promise<HttpOutcome> {
  const started = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  return new Promise((resolve) => {
    let settled = false;
    const finish = (statusCode: number | null, error: string | null): void => {
      if (settled) return;
      settled = true;
      resolve({ statusCode, error, latencyMs: performance.now() - started });
    };
    const describe = (err: unknown): string => (signal.aborted ? `timeout after ${timeoutMs} ms` : errorCode(err));
    const send = address.url.protocol === "https:" ? httpsRequest : httpRequest;
    const headers: Record<string, string> = { "user-agent": "mindroom-health-prober", accept: "*/*" };
    if (address.host) headers.host = address.host;
    const req = send(
      address.url,
      { method: "GET", agent: false, headers, signal, ...(address.host ? { servername: address.host } : {}) },
      (res: IncomingMessage) => {
        res.on("error", (err) => finish(res.statusCode ?? null, describe(err)));
        res.on("close", () => (res.complete ? finish(res.statusCode ?? null, null) : finish(res.statusCode ?? null, describe(new Error("body aborted")))));
        res.resume();
      },
    );
    req.on("error", (err) => finish(null, describe(err)));
    req.end();
  });
}

function errorCode(err: unknown): string {
  const e = coerceError(err);
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? code : e.message.slice(0, 200);
}

/** Kubernetes' httpGet rule: any 2xx or 3xx answer is a success. */
export function isSuccess(outcome: HttpOutcome): boolean {
  return outcome.error === null && outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 400;
}

interface ScheduledTarget {
  target: ProbeTarget;
  dueAt: number;
}

/**
 * Modes: idle (constructed) → running (`start`, until its signal aborts) → stopped (start resolved
 * after in-flight rounds finished, each bounded by timeoutMs plus its database writes).
 * `probeOnce` may be called in any mode. At most one round per instance is in flight at a time.
 */
export class HealthProber {
  private readonly o: Required<Omit<HealthProberOptions, "onRound">> & Pick<HealthProberOptions, "onRound">;
  private readonly limit: LimitFunction;
  private readonly histogram: Histogram<"component">;
  private readonly inFlight = new Set<string>();

  constructor(options: HealthProberOptions) {
    const intervalMs = options.intervalMs ?? DEFAULT_HEALTH_INTERVAL_MS;
    const concurrency = options.concurrency ?? DEFAULT_PROBE_CONCURRENCY;
    const timeoutMs = options.timeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    if (!(intervalMs > 0)) throw new Error(`HealthProber: intervalMs must be > 0, got ${intervalMs}`);
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`HealthProber: concurrency must be an integer >= 1, got ${concurrency}`);
    if (!(timeoutMs > 0)) throw new Error(`HealthProber: timeoutMs must be > 0, got ${timeoutMs}`);
    this.o = {
      ...options,
      intervalMs,
      concurrency,
      timeoutMs,
      healthPathFor: options.healthPathFor ?? ((c) => DEFAULT_TEMPLATE[c].healthPath),
      now: options.now ?? (() => new Date()),
    };
    this.limit = pLimit(concurrency);
    this.histogram = probeHistogram(options.registry);
  }

  /** Probes on schedule until `signal` aborts; resolves after in-flight rounds have finished. */
  async start(signal: AbortSignal): Promise<void> {
    const schedule = new Map<string, ScheduledTarget>();
    const running = new Set<Promise<void>>();
    let refreshAt = 0;
    while (!signal.aborted) {
      const now = this.o.now().getTime();
      if (now >= refreshAt) {
        await this.refresh(schedule, now);
        refreshAt = now + Math.min(this.o.intervalMs, TARGET_REFRESH_MS);
      }
      for (const entry of schedule.values()) {
        if (entry.dueAt > now) continue;
        entry.dueAt = nextProbeAt(phaseOffsetMs(entry.target.instanceId, this.o.intervalMs), this.o.intervalMs, new Date(now)).getTime();
        const round = this.launch(entry.target);
        if (round) {
          running.add(round);
          void round.finally(() => running.delete(round));
        }
      }
      const wakeAt = Math.min(refreshAt, ...[...schedule.values()].map((e) => e.dueAt));
      await pause(wakeAt - this.o.now().getTime(), signal);
    }
    await Promise.allSettled([...running]);
  }

  /**
   * Probes now: one instance (if it is a probe target) or every target, storing and reporting as
   * scheduled rounds do. A round that cannot be stored (e.g. the instance was deleted meanwhile) is
   * logged and left out of the answer; failing to list targets rejects.
   */
  async probeOnce(instanceId?: string): Promise<ProbeRound[]> {
    const targets = (await listProbeTargets(this.o.sql)).filter((t) => instanceId === undefined || t.instanceId === instanceId);
    const settled = await Promise.allSettled(targets.map((t) => this.probeInstance(t)));
    return settled.flatMap((s, i) => {
      if (s.status === "fulfilled") return [s.value];
      this.o.logger.error({ err: coerceError(s.reason), instance: targets[i]?.instanceId }, "health round failed");
      return [];
    });
  }

  private async refresh(schedule: Map<string, ScheduledTarget>, now: number): Promise<void> {
    let targets: ProbeTarget[];
    try {
      targets = await listProbeTargets(this.o.sql);
    } catch (thrown) {
      this.o.logger.error({ err: coerceError(thrown) }, "health prober could not list targets");
      return;
    }
    const seen = new Set<string>();
    for (const target of targets) {
      seen.add(target.instanceId);
      const entry = schedule.get(target.instanceId);
      if (entry) entry.target = target;
      else {
        // First sight: an instance never probed (new) is probed at once; one with results waits
        // for its own phase, so a restarted controller does not probe everything at once.
        const dueAt = target.neverProbed ? now : nextProbeAt(phaseOffsetMs(target.instanceId, this.o.intervalMs), this.o.intervalMs, new Date(now)).getTime();
        schedule.set(target.instanceId, { target, dueAt });
      }
    }
    for (const id of schedule.keys()) if (!seen.has(id)) schedule.delete(id);
  }

  private launch(target: ProbeTarget): Promise<void> | undefined {
    if (this.inFlight.has(target.instanceId)) return undefined;
    this.inFlight.add(target.instanceId);
    return this.probeInstance(target)
      .then(
        () => undefined,
        (thrown: unknown) => this.o.logger.error({ err: coerceError(thrown), instance: target.instanceId }, "health round failed"),
      )
      .finally(() => this.inFlight.delete(target.instanceId));
  }

  private async probeInstance(target: ProbeTarget): Promise<ProbeRound> {
    const checkedAt = this.o.now();
    const results = await Promise.all(COMPONENTS.map((component) => this.limit(() => this.probeComponent(target, component))));
    const health = aggregate(results);
    const previous = await recordResults(this.o.sql, target.instanceId, { checkedAt, results, health });
    if (previous !== health) {
      this.o.logger.info({ instance: target.instanceId, subscription: target.subscriptionId, previous, health }, "instance health changed");
    }
    if (health === "healthy") await markRecovered(this.o.sql, target.instanceId);
    const unhealthy = await this.failingComponents(target.instanceId, results);
    if (unhealthy.length > 0) this.report(target, unhealthy);
    const round: ProbeRound = { instanceId: target.instanceId, subscriptionId: target.subscriptionId, checkedAt, health, results, unhealthy };
    this.o.onRound?.(round);
    return round;
  }

  private async probeComponent(target: ProbeTarget, component: Component): Promise<ProbeResult> {
    const address = probeAddress(target.ingressUrl, this.o.domainFor(target.subdomain, component), this.o.healthPathFor(component));
    const outcome = await httpProbe(address, this.o.timeoutMs);
    this.histogram.observe({ component }, outcome.latencyMs / 1000);
    const ok = isSuccess(outcome);
    const error = ok ? null : (outcome.error ?? `HTTP ${outcome.statusCode}`);
    return { component, ok, statusCode: outcome.statusCode, latencyMs: outcome.latencyMs, error };
  }

  /** Components failing now with FAILURE_THRESHOLD or more failures in a row since the last restart. */
  private async failingComponents(instanceId: string, results: readonly ProbeResult[]): Promise<Component[]> {
    const failing: Component[] = [];
    for (const r of results) {
      if (r.ok) continue;
      const recent = await recentProbes(this.o.sql, instanceId, r.component, FAILURE_THRESHOLD);
      if (consecutiveFailures(recent) >= FAILURE_THRESHOLD) failing.push(r.component);
    }
    return failing;
  }

  private report(target: ProbeTarget, components: readonly Component[]): void {
    this.o.logger.warn({ instance: target.instanceId, subscription: target.subscriptionId, components }, "components failing health probes");
    try {
      this.o.onUnhealthy(target.subscriptionId, target.instanceId, components);
    } catch (thrown) {
      this.o.logger.error({ err: coerceError(thrown), instance: target.instanceId }, "onUnhealthy failed");
    }
  }
}

function probeHistogram(registry: Registry): Histogram<"component"> {
  const existing = registry.getSingleMetric(HEALTH_PROBE_METRIC);
  if (existing) {
    if (!(existing instanceof Histogram)) throw new Error(`${HEALTH_PROBE_METRIC} is registered but is not a histogram`);
    return existing as Histogram<"component">;
  }
  const histogram = new Histogram({
    name: HEALTH_PROBE_METRIC,
    help: "Duration of one health probe, by component",
    labelNames: ["component"] as const,
    buckets: [...HEALTH_PROBE_BUCKETS],
    registers: [registry],
  });
  for (const component of COMPONENTS) histogram.zero({ component });
  return histogram;
}
