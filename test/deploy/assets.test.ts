/**
 * Checks on the deployment assets that need no Prometheus: promtool cannot run in CI, so this
 * makes sure its unit tests cover every alert both ways, and that an operator reading the
 * dashboard during an incident finds a description on every panel.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, test } from "vitest";
import { parse as parseYaml } from "yaml";

import { alertRules, dashboardPanels, DEPLOY_DIR } from "./references.ts";

const PROMTOOL_DIR = join(DEPLOY_DIR, "prometheus", "tests");

interface PromtoolFile {
  readonly rule_files: readonly string[];
  readonly tests: readonly { readonly alert_rule_test?: readonly { readonly alertname: string; readonly exp_alerts?: readonly unknown[] }[] }[];
}

function promtoolFiles(): [string, PromtoolFile][] {
  return readdirSync(PROMTOOL_DIR)
    .filter((name) => name.endsWith(".test.yml"))
    .map((name) => [name, parseYaml(readFileSync(join(PROMTOOL_DIR, name), "utf8")) as PromtoolFile]);
}

describe("promtool unit tests (run them with: promtool test rules deploy/prometheus/tests/*.test.yml)", () => {
  test("every file tests the rules in deploy/prometheus/alerts.yml", () => {
    const files = promtoolFiles();
    expect(files.length).toBeGreaterThan(0);
    for (const [name, file] of files) expect(file.rule_files, name).toEqual(["../alerts.yml"]);
  });

  test("every alert has a case where it fires and one where it stays silent", () => {
    const firing = new Set<string>();
    const silent = new Set<string>();
    for (const [, file] of promtoolFiles()) {
      for (const check of file.tests.flatMap((t) => t.alert_rule_test ?? [])) {
        ((check.exp_alerts?.length ?? 0) > 0 ? firing : silent).add(check.alertname);
      }
    }
    const alerts = alertRules().flatMap((rule) => (rule.alert ? [rule.alert] : []));
    expect(alerts.length).toBeGreaterThan(20);
    expect(alerts.filter((alert) => !firing.has(alert)), "alerts never tested firing").toEqual([]);
    expect(alerts.filter((alert) => !silent.has(alert)), "alerts never tested silent").toEqual([]);
  });
});

describe("Grafana dashboard", () => {
  test("every panel says what it shows and what to do about it", () => {
    const panels = dashboardPanels().filter((panel) => panel.type !== "row");
    expect(panels.length).toBeGreaterThan(20);
    expect(panels.filter((panel) => (panel.description ?? "").length < 40).map((panel) => panel.title)).toEqual([]);
  });
});
