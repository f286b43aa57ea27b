/**
 * Database pool metrics, read at scrape time: connections of this process by state (from
 * pg_stat_activity, matched by this process's application_name), the pool size, and reachability.
 */
import type { Sql } from "postgres";
import { Gauge, type Registry } from "prom-client";

export function registerPoolMetrics(registry: Registry, sql: Sql, applicationName: string, poolMax: number): void {
  const connections = new Gauge({ name: "mindroom_db_connections", help: "Connections of this process to the database, by state", labelNames: ["state"], registers: [] });
  new Gauge({
    name: "mindroom_db_up",
    help: "1 when the database answered this scrape",
    registers: [registry],
    // One query per scrape, made here because this gauge is serialised before the connections one.
    async collect() {
      connections.reset();
      try {
        const rows = await sql<{ state: string | null; count: number }[]>`
          select state, count(*)::int as count from pg_stat_activity
          where application_name = ${applicationName} group by state`;
        for (const row of rows) connections.set({ state: row.state ?? "unknown" }, row.count);
        this.set(1);
      } catch {
        this.set(0);
      }
    },
  });
  registry.registerMetric(connections);
  new Gauge({ name: "mindroom_db_pool_max", help: "Maximum connections in this process's pool", registers: [registry] }).set(poolMax);
}
