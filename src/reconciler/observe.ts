/**
 * Observation for a pass (DESIGN section 6). The shallow view of a host (every app, O(1) SSH
 * commands) is shared by all workers: cached for `hostTtlMs` and fetched once however many
 * workers ask at the same moment. A deep observe of an instance's own apps happens only when
 * something says it may have changed: a new generation, an action of unknown outcome, a shallow
 * view that does not match the desired phase, an explicit request, or the slow rotation that
 * audits every instance at least every `deepIntervalMs`.
 */
import type { DesiredInstance, Driver, HostRef, ObservedApp, ObservedHost } from "./types.ts";

export interface ObserverOptions {
  readonly driver: Driver;
  /** How long a shallow host view is reused. */
  readonly hostTtlMs: number;
  /** The slow rotation: every instance is deep-observed at least this often. */
  readonly deepIntervalMs: number;
  readonly now: () => number;
}

export type DeepReason = "generation" | "unknown-outcome" | "shallow-mismatch" | "requested" | "rotation";

export class Observer {
  private readonly hosts = new Map<string, { at: number; view: Promise<ObservedHost> }>();
  private readonly lastDeep = new Map<string, number>();

  constructor(private readonly options: ObserverOptions) {}

  /** The shallow view of a host, shared by concurrent callers. */
  async host(host: HostRef, signal?: AbortSignal): Promise<ObservedHost> {
    const cached = this.hosts.get(host.id);
    if (cached && this.options.now() - cached.at < this.options.hostTtlMs) return cached.view;
    const view = this.options.driver.observeHost(host, signal);
    this.hosts.set(host.id, { at: this.options.now(), view });
    view.catch(() => this.hosts.delete(host.id));
    return view;
  }

  /** Forgets the shallow view after this process changed the host, so the next pass sees it. */
  invalidate(hostId: string): void {
    this.hosts.delete(hostId);
  }

  /** Why this instance needs a deep observe now, or undefined when the shallow view suffices. */
  deepReason(instanceId: string, desired: DesiredInstance, shallow: ReadonlyMap<string, ObservedApp>, triggers: { generationChanged: boolean; unknownOutcome: boolean; requested: boolean }): DeepReason | undefined {
    if (triggers.requested) return "requested";
    if (triggers.unknownOutcome) return "unknown-outcome";
    if (triggers.generationChanged) return "generation";
    if (!shallowMatches(desired, shallow)) return "shallow-mismatch";
    const last = this.lastDeep.get(instanceId);
    if (last === undefined || this.options.now() - last >= this.options.deepIntervalMs) return "rotation";
    return undefined;
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

/** This instance's apps as the shallow host view shows them. */
export function instanceApps(desired: DesiredInstance, host: ObservedHost): Map<string, ObservedApp> {
  const apps = new Map<string, ObservedApp>();
  for (const app of desired.apps) {
    const observed = host.apps.get(app.app);
    if (observed) apps.set(app.app, observed);
  }
  return apps;
}

/** Whether the shallow view already shows the desired phase reached (nothing to deep-check). */
export function shallowMatches(desired: DesiredInstance, shallow: ReadonlyMap<string, ObservedApp>): boolean {
  switch (desired.phase) {
    case "running":
      return desired.apps.every((app) => {
        const observed = shallow.get(app.app);
        return observed !== undefined && observed.deployed && observed.running;
      });
    case "stopped":
      return [...shallow.values()].every((observed) => !observed.running);
    case "deprovisioned":
      return shallow.size === 0;
  }
}
