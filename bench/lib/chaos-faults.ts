/**
 * The faults of the chaos soak, one at a time at seeded random moments: each `inject` resolves
 * once its fault is cleared (a frozen database thawed, a silent host answering again). The
 * postmaster is killed at most `POSTMASTER_KILLS_PER_WINDOW` times per 10 minutes, under the
 * daemon's restart budget (5): past it the daemon exits 1 by design, which is a restart by the
 * supervisor, not a fault worth injecting again and again.
 */
import type { ChaosDaemon } from "./chaos-daemon.ts";
import type { SandboxProcess } from "./sandbox-process.ts";

export const FAULT_KINDS = ["kill_daemon", "freeze_database", "kill_postmaster", "drop_ssh", "host_unresponsive", "app_unhealthy"] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

const POSTMASTER_KILLS_PER_WINDOW = 3;
const WINDOW_MS = 10 * 60_000;

export class FaultInjector {
  readonly injected: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
  private readonly postmasterKills: number[] = [];

  constructor(
    private readonly random: () => number,
    private readonly daemon: ChaosDaemon,
    private readonly hosts: readonly SandboxProcess[],
  ) {}

  /** Picks a fault, injects it and waits until it is cleared. */
  async injectOne(): Promise<FaultKind> {
    let kind = this.pick(FAULT_KINDS);
    const recent = this.postmasterKills.filter((at) => Date.now() - at < WINDOW_MS);
    if (kind === "kill_postmaster" && recent.length >= POSTMASTER_KILLS_PER_WINDOW) kind = "freeze_database";
    await this.inject(kind);
    this.injected[kind] += 1;
    return kind;
  }

  private async inject(kind: FaultKind): Promise<void> {
    switch (kind) {
      case "kill_daemon":
        return this.daemon.kill();
      case "freeze_database": {
        const pids = await this.daemon.freezeDatabase();
        await this.sleep(3_000, 12_000);
        return this.daemon.thaw(pids);
      }
      case "kill_postmaster":
        this.postmasterKills.push(Date.now());
        return void (await this.daemon.killPostmaster());
      case "drop_ssh": {
        const host = this.pick(this.hosts);
        for (let i = 0; i < 3; i++) await host.dropNext(this.random() < 0.5 ? "channel" : "connection", this.random() < 0.5);
        return;
      }
      case "host_unresponsive": {
        const host = this.pick(this.hosts);
        await host.setUnresponsive(true);
        await this.sleep(5_000, 20_000);
        return host.setUnresponsive(false);
      }
      case "app_unhealthy":
        return this.unhealthyApp();
    }
  }

  private async unhealthyApp(): Promise<void> {
    const host = this.pick(this.hosts);
    const running = (await host.apps()).filter((app) => app.running);
    if (running.length === 0) return;
    const app = this.pick(running).name;
    await host.setUnhealthy(app, true);
    await this.sleep(10_000, 30_000);
    await host.setUnhealthy(app, false);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)]!;
  }

  private sleep(minMs: number, maxMs: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, minMs + this.random() * (maxMs - minMs)));
  }
}
