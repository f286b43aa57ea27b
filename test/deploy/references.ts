/**
 * What the deployment assets ask of /metrics: every series selector in the Prometheus alert rules
 * and the Grafana dashboard, read with the PromQL grammar Prometheus's own UI uses
 * (@prometheus-io/lezer-promql), and the sample names and label names a scrape actually holds.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { parser } from "@prometheus-io/lezer-promql";
import { parse as parseYaml } from "yaml";

export const DEPLOY_DIR = join(import.meta.dirname, "..", "..", "deploy");
export const ALERTS_FILE = join(DEPLOY_DIR, "prometheus", "alerts.yml");
export const DASHBOARD_FILE = join(DEPLOY_DIR, "grafana", "mindroom-reconciler.json");

/** One PromQL expression and where it came from (an alert name or a panel title). */
export interface Expression {
  readonly source: string;
  readonly expr: string;
}

/** One series selector: the metric name and the label names its matchers use. */
export interface Selector {
  readonly source: string;
  readonly metric: string;
  readonly labels: readonly string[];
}

interface AlertRule {
  readonly alert?: string;
  readonly record?: string;
  readonly expr: string;
}

interface RulesFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly AlertRule[] }[];
}

export function alertRules(): AlertRule[] {
  const file = parseYaml(readFileSync(ALERTS_FILE, "utf8")) as RulesFile;
  return file.groups.flatMap((group) => group.rules);
}

export function alertExpressions(): Expression[] {
  return alertRules().map((rule) => ({ source: `alert ${rule.alert ?? rule.record ?? "?"}`, expr: rule.expr }));
}

export interface Panel {
  readonly type: string;
  readonly title: string;
  readonly description?: string;
  readonly targets?: readonly { readonly expr?: string }[];
}

export function dashboardPanels(): Panel[] {
  return (JSON.parse(readFileSync(DASHBOARD_FILE, "utf8")) as { panels: Panel[] }).panels;
}

/** Grafana's built-in interval variables are not PromQL; `$job` only appears inside strings. */
function withoutGrafanaVariables(expr: string): string {
  return expr.replaceAll(/\$__(rate_interval|interval|range)/g, "5m");
}

export function dashboardExpressions(): Expression[] {
  return dashboardPanels().flatMap((panel) =>
    (panel.targets ?? []).flatMap((target) => (target.expr ? [{ source: `panel "${panel.title}"`, expr: withoutGrafanaVariables(target.expr) }] : [])),
  );
}

/** Every series selector of an expression. Throws on a syntax error or a selector without a name. */
export function selectorsOf({ source, expr }: Expression): Selector[] {
  const selectors: Selector[] = [];
  const cursor = parser.parse(expr).cursor();
  do {
    if (cursor.type.isError) throw new Error(`${source}: PromQL syntax error at ${cursor.from} in ${expr}`);
    if (cursor.name !== "VectorSelector") continue;
    const node = cursor.node;
    const name = node.getChild("Identifier");
    if (!name) throw new Error(`${source}: a selector without a metric name in ${expr}`);
    const labels = node.getChild("LabelMatchers")?.getChildren("UnquotedLabelMatcher") ?? [];
    selectors.push({
      source,
      metric: expr.slice(name.from, name.to),
      labels: labels.map((matcher) => {
        const label = matcher.getChild("LabelName")!;
        return expr.slice(label.from, label.to);
      }),
    });
  } while (cursor.next());
  return selectors;
}

/** Sample name → the label names seen on its samples, from the Prometheus text format. */
export function exposedSamples(text: string): Map<string, Set<string>> {
  const samples = new Map<string, Set<string>>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    const labels = samples.get(match[1]!) ?? new Set<string>();
    for (const label of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"/g)) labels.add(label[1]!);
    samples.set(match[1]!, labels);
  }
  return samples;
}

/** Series Prometheus itself writes for a target, and the labels it attaches to every series. */
export const SCRAPER_SERIES = new Set(["up"]);
export const TARGET_LABELS = new Set(["job", "instance"]);

/** What a selector needs that the scrape lacks, in words; empty when the scrape satisfies it. */
export function missingFrom(samples: Map<string, Set<string>>, selector: Selector): string[] {
  if (SCRAPER_SERIES.has(selector.metric)) return [];
  const labels = samples.get(selector.metric);
  if (!labels) return [`${selector.source}: ${selector.metric} has no sample in /metrics`];
  return selector.labels
    .filter((label) => !TARGET_LABELS.has(label) && !labels.has(label))
    .map((label) => `${selector.source}: ${selector.metric} has no label "${label}"`);
}
