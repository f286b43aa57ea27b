/**
 * The alert rules and the dashboard only work if the daemon exports what they select. promtool
 * cannot run in CI, so this checks it against a real `serve` process: the seed converged on the
 * sandbox host, probed, one Stripe webhook and one /v1 API request answered; then every selector in
 * deploy/prometheus/alerts.yml and deploy/grafana/mindroom-reconciler.json must name a metric with
 * samples in its /metrics, and every label its matchers use must be on those samples.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { seed } from "../../src/state/db.ts";
import { eventually } from "../e2e/harness.ts";
import { type ServeProcess, startServe } from "../e2e/serve-process.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { alertExpressions, dashboardExpressions, exposedSamples, missingFrom, selectorsOf } from "./references.ts";

let db: TestDatabase;
let dataDir: string;
let serve: ServeProcess | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  await seed(db.sql);
  dataDir = await mkdtemp(join(tmpdir(), "mindroom-metrics-"));
}, 60_000);

afterAll(async () => {
  serve?.kill("SIGKILL");
  await serve?.exited;
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  return response.text();
}

const healthyRunning = /^mindroom_instances\{phase="running",tier="[^"]*",health="healthy"\} (\d+)/gm;

function healthyInstances(metrics: string): number {
  return [...metrics.matchAll(healthyRunning)].reduce((sum, match) => sum + Number(match[1]), 0);
}

describe("metrics the deployment assets use", () => {
  test("the selectors are read from both files (the parser sees what a reader sees)", () => {
    const alerts = alertExpressions().flatMap(selectorsOf);
    const panels = dashboardExpressions().flatMap(selectorsOf);
    expect(alerts.map((s) => s.metric)).toContain("mindroom_dokku_command_errors_total");
    expect(panels.map((s) => s.metric)).toContain("process_resident_memory_bytes");
    const leader = alerts.find((s) => s.source === "alert MindroomDokkuHostDown" && s.metric === "leader_election_master_status");
    expect(leader?.labels).toEqual(["name"]);
    expect(() => selectorsOf({ source: "broken", expr: "sum(rate(foo[5m])" })).toThrow(/syntax error/);
    expect(missingFrom(exposedSamples('foo_total{a="x,y}"} 1\n'), { source: "s", metric: "foo_total", labels: ["a", "b", "job"] })).toEqual([
      's: foo_total has no label "b"',
    ]);
  });

  test("every metric and matcher label is exported by a running daemon, with samples", async () => {
    serve = startServe({ DATABASE_URL: db.url, DATA_DIR: dataDir, RESYNC_INTERVAL: "2s" });
    const port = await serve.port;
    await eventually("/readyz 200", async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 60_000);
    await eventually("the four seeded instances running and healthy", async () => healthyInstances(await scrape(port)) === 4, 120_000);
    const send = spawnSync(process.execPath, ["src/bin.mjs", "stripe", "send", "customer.created"], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, DATABASE_URL: db.url, PORT: String(port) },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(send.status, send.stderr).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/v1/openapi.json`, { signal: AbortSignal.timeout(5000) })).status).toBe(200);

    const samples = exposedSamples(await scrape(port));
    const selectors = [...alertExpressions(), ...dashboardExpressions()].flatMap(selectorsOf);
    expect(selectors.length).toBeGreaterThan(40);
    expect(selectors.flatMap((selector) => missingFrom(samples, selector))).toEqual([]);
  }, 240_000);
});
