/**
 * The naive baseline of the scale benchmark: observation without the shared host view. Every pass
 * asks Dokku about each of the instance's own apps (`ps:report <app>`, one SSH command per app),
 * and, with the deep rotation at 0, deep-observes every existing app on every pass as well (the
 * driver's `observeApp`, seven read commands per app). Nothing is cached between passes or shared
 * between instances. Everything else (desired state, plan, apply, journal, status) is the real
 * Reconciler's.
 *
 */
import type { DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { observedFromPs, parseReport } from "../../src/drivers/dokku/parse.ts";
import { Observer } from "../../src/reconciler/observe.ts";
import type { DesiredInstance, HostRef, ObservedApp } from "../../src/reconciler/types.ts";

/** Dokku's exit status for "App <name> does not exist". */
const APP_MISSING_EXIT = 20;

export class NaiveObserver extends Observer {
  constructor(
    private readonly driver: DokkuDriver,
    now: () => number,
  ) {
    super({ driver, hostTtlMs: 0, deepIntervalMs: 0, now });
  }

  /** One `ps:report <app>` per app of the instance, one after another; no cache. */
  override async instance(host: HostRef, desired: DesiredInstance, signal?: AbortSignal): Promise<Map<string, ObservedApp>> {
    const apps = new Map<string, ObservedApp>();
    for (const { app } of desired.apps) {
      const result = await this.driver.runRaw(host, ["ps:report", app], { ...(signal && { signal }) });
      if (result.exitCode === APP_MISSING_EXIT) continue;
      if (result.exitCode !== 0) throw new Error(`naive observe: ps:report ${app} on ${host.name} exited ${result.exitCode}`);
      apps.set(app, observedFromPs(app, parseReport(result.stdout)));
    }
    return apps;
  }
}
