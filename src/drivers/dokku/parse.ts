/**
 * Pure: Dokku CLI output → observed state. Handles the text and JSON report formats of Dokku
 * 0.30 (bash and early Go reports), 0.34 and 0.38 as reference dokku-cli.md §6–§7 describes them.
 * Keys are matched case-insensitively after normalising, so padding width (31, 33, 34, or the
 * bash `%-30s`) and trailing spaces do not matter.
 */
import { StringDecoder } from "node:string_decoder";

import { z } from "zod";

import type { ObservedApp, ResourceLimits } from "../../reconciler/types.ts";

/** One report: normalised key (lower case, single spaces) → value (trailing spaces removed). */
export type Report = ReadonlyMap<string, string>;

const HEADER = /^=====> (\S+) (.+?) information\s*$/;
/** Values may contain `:` (`on-failure:10`), so the key stops at the first colon. */
const FIELD = /^ {7}([^:]+):[ \t]*(.*)$/;

function normaliseKey(key: string): string {
  return key.trim().toLowerCase().replace(/[\s._-]+/g, " ");
}

function addField(fields: Map<string, string>, line: string): void {
  const match = FIELD.exec(line);
  if (match?.[1] !== undefined) fields.set(normaliseKey(match[1]), (match[2] ?? "").trimEnd());
}

/** A single-app text report (with or without its `=====>` header). */
export function parseReport(stdout: string): Report {
  const fields = new Map<string, string>();
  for (const line of stdout.split("\n")) addField(fields, line);
  return fields;
}

/**
 * A bulk text report (`ps:report` with no app): one block per app, each opened by
 * `=====> <app> <type> information`. Lines before the first header are ignored. "You haven't
 * deployed any applications yet" (exit 0) yields an empty map.
 */
export function parseBulkReport(stdout: string): Map<string, Report> {
  const blocks = new Map<string, Report>();
  let current: Map<string, string> | undefined;
  for (const line of stdout.split("\n")) {
    const header = HEADER.exec(line);
    if (header?.[1] !== undefined) {
      current = new Map();
      blocks.set(header[1], current);
    } else if (current) {
      addField(current, line);
    }
  }
  return blocks;
}

/**
 * A copy of `text` that does not keep the string it was cut from alive. V8 represents a long
 * substring as a slice of its parent: an app name cut from an 8 MB `ps:report` would keep the
 * whole report in memory for as long as the cached host view holds the name.
 */
function detached(text: string): string {
  return Buffer.from(text, "utf8").toString("utf8");
}

/**
 * The shallow state of every app from a bulk `ps:report`, keeping only what planning needs:
 * the same answer as `observedFromPs` over `parseBulkReport`, without a map of every field per
 * app and without references into the report text.
 */
export function parseBulkPs(stdout: string): Map<string, ObservedApp> {
  const parser = new BulkPsParser();
  parser.write(stdout);
  return parser.end();
}

/**
 * `parseBulkPs` over a stream: chunks are parsed as they arrive (split anywhere, even inside a
 * UTF-8 character), so a host's report (about 1 KB per app) is never held whole, nor as lines.
 */
export class BulkPsParser {
  private readonly apps = new Map<string, ObservedApp>();
  private readonly decoder = new StringDecoder("utf8");
  private current: { app: string; deployed: boolean; running: boolean } | undefined;
  /** The last line seen, until its newline arrives. */
  private partial = "";

  write(chunk: Buffer | string): void {
    const text = this.partial + (typeof chunk === "string" ? chunk : this.decoder.write(chunk));
    let start = 0;
    for (let end = text.indexOf("\n"); end !== -1; end = text.indexOf("\n", start)) {
      this.line(text.slice(start, end));
      start = end + 1;
    }
    this.partial = detached(text.slice(start));
  }

  /** The apps seen; the parser is done. */
  end(): Map<string, ObservedApp> {
    const rest = this.partial + this.decoder.end();
    this.partial = "";
    if (rest) this.line(rest);
    this.close();
    return this.apps;
  }

  private line(line: string): void {
    const header = HEADER.exec(line);
    if (header?.[1] !== undefined) {
      this.close();
      this.current = { app: detached(header[1]), deployed: false, running: false };
      return;
    }
    const current = this.current;
    const match = current ? FIELD.exec(line) : null;
    if (!current || match?.[1] === undefined) return;
    const key = normaliseKey(match[1]);
    if (key === "deployed") current.deployed = (match[2] ?? "").trimEnd() === "true";
    else if (key === "running") current.running = (match[2] ?? "").trimEnd() === "true";
  }

  private close(): void {
    const current = this.current;
    if (current) this.apps.set(current.app, { app: current.app, deployed: current.deployed, running: current.running });
    this.current = undefined;
  }
}

/** Looks a field up by any of its names (trimmed, legacy-prefixed, JSON or text spelling). */
export function field(report: Report, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = report.get(normaliseKey(name));
    if (value !== undefined) return value;
  }
  return undefined;
}

const jsonReport = z.record(z.string(), z.string());

/** A `--format json` report line: a flat object of strings (both key spellings from 0.38.8). */
export function parseJsonReport(line: string): Report {
  const parsed = jsonReport.parse(JSON.parse(line));
  return new Map(Object.entries(parsed).map(([key, value]) => [normaliseKey(key), value]));
}

/** `apps:report --format json` with no app: one line per app, named by its `dir` field. */
export function parseBulkJsonAppsReport(stdout: string): Map<string, Report> {
  const reports = new Map<string, Report>();
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const report = parseJsonReport(line);
    const dir = field(report, "dir", "app-dir");
    const name = dir?.split("/").pop();
    if (name) reports.set(name, report);
  }
  return reports;
}

/** Shallow state from a ps report (text or JSON): `Running: mixed` counts as not running. */
export function observedFromPs(app: string, report: Report): ObservedApp {
  return {
    app,
    deployed: field(report, "deployed") === "true",
    running: field(report, "running") === "true",
  };
}

/** `domains:report <app>`: the app's own vhosts, space separated. */
export function parseDomains(report: Report): string[] {
  const vhosts = field(report, "domains app vhosts", "app-vhosts") ?? "";
  return vhosts.split(/\s+/).filter((domain) => domain.length > 0);
}

const storageList = z.array(z.object({ host_path: z.string(), container_path: z.string() }).loose());

/**
 * `storage:list <app> --format json`: 0.38 prints one compact line with `entry_name`; 0.29.3–0.37
 * print multi-line jq output. Both become `host-path:container-path`. An app without mounts may
 * print nothing or `null` on old versions.
 */
export function parseStorageList(stdout: string): string[] {
  const text = stdout.trim();
  if (text === "" || text === "null") return [];
  return storageList.parse(JSON.parse(text)).map((mount) => `${mount.host_path}:${mount.container_path}`);
}

const MEMORY = /^(\d+(?:\.\d+)?)([bkmg]?)$/i;
const MB_PER_UNIT: Record<string, number> = { b: 1 / (1024 * 1024), k: 1 / 1024, m: 1, g: 1024, "": 1 };

function parseMemoryMb(value: string | undefined): number | undefined {
  const match = MEMORY.exec(value ?? "");
  if (!match?.[1]) return undefined;
  return Math.round(Number(match[1]) * (MB_PER_UNIT[(match[2] ?? "").toLowerCase()] ?? 1));
}

function findKey(report: Report, pattern: RegExp): string | undefined {
  for (const [key, value] of report) if (pattern.test(key)) return value;
  return undefined;
}

/** `resource:report <app>`: the default process type's limits, or null when none is set. */
export function parseResources(report: Report): ResourceLimits | null {
  const memoryMb = parseMemoryMb(findKey(report, /^resource default limit memory$/));
  const cpuText = findKey(report, /^resource default limit cpu$/) ?? "";
  const cpus = cpuText === "" ? undefined : Number(cpuText);
  if (memoryMb === undefined && (cpus === undefined || !Number.isFinite(cpus))) return null;
  return { memoryMb: memoryMb ?? 0, cpus: cpus !== undefined && Number.isFinite(cpus) ? cpus : 0 };
}

/** `apps:report <app>`: the image when the deploy source is `docker-image`, else null. */
export function parseDeployedImage(report: Report): string | null {
  const source = field(report, "app deploy source", "deploy-source");
  const metadata = field(report, "app deploy source metadata", "deploy-source-metadata");
  return source === "docker-image" && metadata ? metadata : null;
}

/** `config:get <app> KEY`: exit 0 prints the value and a newline; exit 1 with no output = unset. */
/** `config:export --format json <app>`: `{"KEY":"value",...}`; anything else is an error. */
export function parseConfigExport(stdout: string): Record<string, string> {
  const parsed: unknown = JSON.parse(stdout.trim() === "" ? "{}" : stdout);
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("config:export did not print a JSON object");
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== "string") throw new Error(`config:export printed a non-string value for ${key}`);
    env[key] = value;
  }
  return env;
}

export function parseConfigGet(exitCode: number, stdout: string): string | null {
  if (exitCode !== 0) return null;
  return stdout.endsWith("\n") ? stdout.slice(0, -1) : stdout;
}

/** `letsencrypt:active <app>` prints `true` or `false`. */
export function parseTlsActive(stdout: string): boolean {
  return stdout.trim() === "true";
}
