/**
 * Driver metrics on an injected registry (STYLE rule 9): fixed names with units, and labels of
 * low cardinality: `host` is HostRef.name, `command` the Dokku subcommand, never an app name.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export interface DriverMetrics {
  readonly commandSeconds: Histogram<"host" | "command">;
  readonly commandErrors: Counter<"host" | "command" | "reason">;
  readonly hostUp: Gauge<"host">;
}

/** Reuses metrics already on the registry, so two drivers may share one registry. */
function existing<T>(registry: Registry, name: string, create: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? create();
}

/**
 * The series of a host that exist from the moment the driver first sees it (STYLE rule 9), so that
 * per-host panels read 0 rather than "no data" and rate() sees a host's very first failure (a
 * counter that appears at 1 has no earlier sample to rise from). They are the failures that say
 * the host itself is in trouble, on the host-level commands every host gets on every resync
 * (`version` once, `ps:report` for the bulk observe): 8 series per host. Other (command, reason)
 * pairs appear with their first failure, as the full product would be hundreds per host.
 */
export const HOST_ERROR_COMMANDS = ["version", "ps:report"] as const;
export const HOST_ERROR_REASONS = ["ConnectionFailed", "Timeout", "ConnectionDropped", "HostKeyMismatch"] as const;

/** Zero-initialises a host's series; idempotent (inc by 0 keeps any count already there). */
export function initHostMetrics(metrics: DriverMetrics, host: string): void {
  for (const command of HOST_ERROR_COMMANDS) {
    for (const reason of HOST_ERROR_REASONS) metrics.commandErrors.inc({ host, command, reason }, 0);
  }
}

export function createDriverMetrics(registry: Registry): DriverMetrics {
  return {
    commandSeconds: existing(registry, "mindroom_dokku_command_seconds", () =>
      new Histogram({
        name: "mindroom_dokku_command_seconds",
        help: "Wall time of one Dokku command over SSH, by host and subcommand.",
        labelNames: ["host", "command"],
        buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
        registers: [registry],
      }),
    ),
    commandErrors: existing(registry, "mindroom_dokku_command_errors_total", () =>
      new Counter({
        name: "mindroom_dokku_command_errors_total",
        help: "Dokku commands that failed, by host, subcommand and reason.",
        labelNames: ["host", "command", "reason"],
        registers: [registry],
      }),
    ),
    hostUp: existing(registry, "mindroom_dokku_host_up", () =>
      new Gauge({
        name: "mindroom_dokku_host_up",
        help: "1 after a successful command on the host, 0 after a connection failure.",
        labelNames: ["host"],
        registers: [registry],
      }),
    ),
  };
}
