/**
 * Observation for a pass (DESIGN section 6). The shallow view of a host (every app, O(1) SSH
 * commands) is shared by all workers and tied to a resync wave: fetched once per host per wave
 * (`beginWave`), however many workers ask and however long the wave takes, and refetched only
 * when older than `hostTtlMs` (a safety bound, not the schedule). Apps this process changes are
 * marked stale in the view and re-read one by one (`ps:report <app>`) when next asked for, so a
 * change costs O(apps changed), not another bulk report. A deep observe of an instance's own apps
 * happens only when something says it may have changed: a new generation, an action of unknown
 * outcome, a shallow view that does not match the desired phase, an explicit request, or the
 * slow rotation that audits every instance at least every `deepIntervalMs`.
 */
import type { DesiredInstance, Driver, HostRef, ObservedApp, ObservedHost } from "./types.ts";

export interface ObserverOptions {
  readonly driver: Driver;
  /** The oldest a shallow host view may be, whatever the wave (a safety bound). */
  readonly hostTtlMs: number;
  /** The slow rotation: every instance is deep-observed at least this often. */
  readonly deepIntervalMs: number;
  readonly now: () => number;
}

export type DeepReason = "generation" | "unknown-outcome" | "shallow-mismatch" | "requested" | "rotation";

interface HostEntry {
  readonly wave: number;
  readonly at: number;
  readonly view: Promise<ObservedHost>;
  /** Apps this process changed since the view was fetched: re-read before they are used. */
  readonly stale: Set<string>;
  /** Apps re-read since: their state (undefined: gone), over the view's. */
  readonly fresh: Map<string, ObservedApp | undefined>;
}

export class Observer {
  private readonly hosts = new Map<string, HostEntry>();
  private readonly lastDeep = new Map<string, number>();
  private wave = 0;

  constructor(private readonly options: ObserverOptions) {}

  /** A resync wave starts: the next look at each host fetches a new view. */
  beginWave(): void {
    this.wave += 1;
  }

  /** The shallow view of a host for this wave, shared by concurrent callers (stale marks not applied). */
  async host(host: HostRef, signal?: AbortSignal): Promise<ObservedHost> {
    return this.entry(host, signal).view;
  }

  /** The shallow state of the instance's apps: the wave's view, with apps changed since re-read. */
  async instance(host: HostRef, desired: DesiredInstance, signal?: AbortSignal): Promise<Map<string, ObservedApp>> {
    return this.instanceApps(host, desired.apps.map((app) => app.app), signal);
  }

  /** The shallow state of these apps (those that exist): the wave's view, with apps changed since re-read. */
  async instanceApps(host: HostRef, names: readonly string[], signal?: AbortSignal): Promise<Map<string, ObservedApp>> {
    const entry = this.entry(host, signal);
    const view = await entry.view;
    const stale = names.filter((name) => entry.stale.has(name));
    if (stale.length > 0) {
      const reread = await this.options.driver.observeApps(host, stale, signal);
      for (const name of stale) {
        entry.fresh.set(name, reread.get(name));
        entry.stale.delete(name);
      }
    }
    const apps = new Map<string, ObservedApp>();
    for (const name of names) {
      const observed = entry.fresh.has(name) ? entry.fresh.get(name) : view.apps.get(name);
      if (observed) apps.set(name, observed);
    }
    return apps;
  }

  /** This process changed (or may have changed) these apps: the view no longer speaks for them. */
  changed(hostId: string, apps: Iterable<string>): void {
    const entry = this.hosts.get(hostId);
    if (!entry) return;
    for (const app of apps) entry.stale.add(app);
  }

  private entry(host: HostRef, signal?: AbortSignal): HostEntry {
    const cached = this.hosts.get(host.id);
    if (cached && cached.wave === this.wave && this.options.now() - cached.at < this.options.hostTtlMs) return cached;
    const view = this.options.driver.observeHost(host, signal);
    const entry: HostEntry = { wave: this.wave, at: this.options.now(), view, stale: new Set(), fresh: new Map() };
    this.hosts.set(host.id, entry);
    view.catch(() => {
      if (this.hosts.get(host.id) === entry) this.hosts.delete(host.id);
    });
    return entry;
  }

  /** Why this instance needs a deep observe now, or undefined when the shallow view suffices. */
  deepReason(instanceId: string, desired: DesiredInstance, shallow: ReadonlyMap<string, ObservedApp>, triggers: { generationChanged: boolean; unknownOutcome: boolean; requested: boolean }): DeepReason | undefined {
    if (triggers.requested) return "requested";
    if (triggers.unknownOutcome) return "unknown-outcome";
    if (triggers.generationChanged) return "generation";
    if (!shallowMatches(desired, shallow)) return "shallow-mismatch";
    return this.deepDue(instanceId) ? "rotation" : undefined;
  }

  /** Whether the slow rotation is due to deep-observe this instance. */
  deepDue(instanceId: string): boolean {
    const last = this.lastDeep.get(instanceId);
    return last === undefined || this.options.now() - last >= this.options.deepIntervalMs;
  }

  /** Deep-observes the instance's apps that the shallow view shows to exist. */
  async deep(instanceId: string, host: HostRef, desired: DesiredInstance, shallow: ReadonlyMap<string, ObservedApp>, signal?: AbortSignal): Promise<Map<string, ObservedApp>> {
    const observed = new Map<string, ObservedApp>();
    for (const app of desired.apps) {
      if (!shallow.has(app.app)) continue;
      const detail = await this.options.driver.observeApp(host, app.app, signal);
      if (detail) observed.set(app.app, detail);
    }
    this.lastDeep.set(instanceId, this.options.now());
    return observed;
  }
}

/** Whether the shallow view already shows the desired phase reached (nothing to deep-check). */
export function shallowMatches(desired: DesiredInstance, shallow: ReadonlyMap<string, ObservedApp>): boolean {
  return appsMatch(desired.phase, desired.apps.map((app) => app.app), shallow);
}

/** Whether the shallow view shows these apps in `phase`: all deployed and running, none running, or none left. */
export function appsMatch(phase: DesiredInstance["phase"], apps: readonly string[], shallow: ReadonlyMap<string, ObservedApp>): boolean {
  switch (phase) {
    case "running":
      return apps.every((app) => {
        const observed = shallow.get(app);
        return observed !== undefined && observed.deployed && observed.running;
      });
    case "stopped":
      return [...shallow.values()].every((observed) => !observed.running);
    case "deprovisioned":
      return shallow.size === 0;
  }
}
