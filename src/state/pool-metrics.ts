/**
 * Database pool metrics, read at scrape time: connections of this process by state (from
 * pg_stat_activity, matched by this process's application_name, alone or followed by `:` and a
 * suffix, as the inbox thread's sessions are named), the pool size, and reachability.
 */
import type { Sql } from "postgres";
import { Gauge, type Registry } from "prom-client";

import { withDeadline } from "./deadline.ts";

/** A scrape must answer while the database hangs (it then reports mindroom_db_up 0). */
const SAMPLE_DEADLINE_MS = 1_500;

interface StateCount {
  readonly state: string | null;
  readonly count: number;
}

export function registerPoolMetrics(registry: Registry, sql: Sql, applicationName: string, poolMax: number): void {
  // prom-client collects every metric of a scrape concurrently, so both gauges await one shared
  // query: the first collect starts it, the other joins it; undefined means the database failed.
  let inFlight: Promise<StateCount[] | undefined> | undefined;
  const poll = (): Promise<StateCount[] | undefined> =>
    (inFlight ??= withDeadline(
      SAMPLE_DEADLINE_MS,
      "pool metrics",
      () => sql<StateCount[]>`
        select state, count(*)::int as count from pg_stat_activity
        where application_name = ${applicationName} or starts_with(application_name, ${`${applicationName}:`}) group by state`,
    )
      .then((rows) => [...rows], () => undefined)
      .finally(() => (inFlight = undefined)));
  new Gauge({
    name: "mindroom_db_up",
    help: "1 when the database answered this scrape",
    registers: [registry],
    async collect() {
      this.set((await poll()) ? 1 : 0);
    },
  });
  new Gauge({
    name: "mindroom_db_connections",
    help: "Connections of this process to the database, by state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const rows = (await poll()) ?? [];
      this.reset();
      for (const row of rows) this.set({ state: row.state ?? "unknown" }, row.count);
    },
  });
  new Gauge({ name: "mindroom_db_pool_max", help: "Maximum connections in this process's pool", registers: [registry] }).set(poolMax);
}
