/**
 * Database pool metrics, read at scrape time: connections of this process by state (from
 * pg_stat_activity, matched by this process's application_name), the pool size, and reachability.
 *
 * prom-client collects all metrics of a scrape concurrently, so both gauges await one shared
 * sample (one query per scrape) instead of one filling the other as a side effect, which left
 * `mindroom_db_connections` empty whenever it was serialised first.
 */
import type { Sql } from "postgres";
import { Gauge, type Registry } from "prom-client";

import { withDeadline } from "./deadline.ts";

/** Samples taken within this window answer the same scrape. */
const SAMPLE_REUSE_MS = 1_000;
/** A scrape must answer while the database hangs (it then reports mindroom_db_up 0). */
const SAMPLE_DEADLINE_MS = 1_500;

type Sample = { up: boolean; connections: { state: string; count: number }[] };

export function registerPoolMetrics(registry: Registry, sql: Sql, applicationName: string, poolMax: number): void {
  const sample = sharedSample(async () => {
    const rows = await withDeadline(
      SAMPLE_DEADLINE_MS,
      "pool metrics",
      () => sql<{ state: string | null; count: number }[]>`
        select state, count(*)::int as count from pg_stat_activity
        where application_name = ${applicationName} group by state`,
    );
    return rows.map((row) => ({ state: row.state ?? "unknown", count: row.count }));
  });
  new Gauge({
    name: "mindroom_db_connections",
    help: "Connections of this process to the database, by state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      this.reset();
      for (const row of (await sample()).connections) this.set({ state: row.state }, row.count);
    },
  });
  new Gauge({
    name: "mindroom_db_up",
    help: "1 when the database answered this scrape",
    registers: [registry],
    async collect() {
      this.set((await sample()).up ? 1 : 0);
    },
  });
  new Gauge({ name: "mindroom_db_pool_max", help: "Maximum connections in this process's pool", registers: [registry] }).set(poolMax);
}

/** One query shared by the concurrent collectors of a scrape. Never rejects. */
function sharedSample(query: () => Promise<Sample["connections"]>): () => Promise<Sample> {
  let last: { at: number; sample: Promise<Sample> } | undefined;
  return () => {
    if (last && Date.now() - last.at < SAMPLE_REUSE_MS) return last.sample;
    const sample = query().then(
      (connections) => ({ up: true, connections }),
      () => ({ up: false, connections: [] }),
    );
    last = { at: Date.now(), sample };
    return sample;
  };
}
