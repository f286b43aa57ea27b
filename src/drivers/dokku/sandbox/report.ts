/**
 * `*:report` output (reference §6): Go layout (`Key:<pad>value`, sorted keys, JSON with optional
 * legacy keys) and the older bash layout (`%-30s %-25s`, no JSON, ` !     not deployed`). Pure
 * formatting plus the flag handling shared by every report.
 */
import type { Io } from "./io.ts";
import { Fail, fail } from "./io.ts";
import { byteOrder } from "./state.ts";

/** One report field: its flag (`--ps-can-scale`) and value. `prefix` marks trimmable keys. */
export interface Field {
  flag: string;
  value: string;
}

export interface ReportSpec {
  type: string;
  app: string;
  fields: Field[];
  /** Go report (else bash). */
  go: boolean;
  /** Plugin prefix (`ps-`) trimmed in JSON with legacy duplicates (0.38.8+), when set. */
  dualPrefix?: string | undefined;
  /** Minimum key width (Go: 31). */
  minWidth?: number;
}

/** `--status-web.1` → `Status web 1`. */
export function keyOf(flag: string): string {
  const k = flag.replace(/^--/, "").replace(/[-.]/g, " ");
  return k.charAt(0).toUpperCase() + k.slice(1);
}

/** Go's json.Marshal of a string: escapes `<>&` and U+2028/2029 as well. */
export function goJsonString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export function goJsonObject(entries: [string, string][]): string {
  const sorted = [...entries].sort((a, b) => byteOrder(a[0], b[0]));
  return `{${sorted.map(([k, v]) => `${goJsonString(k)}:${goJsonString(v)}`).join(",")}}`;
}

function jsonEntries(spec: ReportSpec): [string, string][] {
  const out = new Map<string, string>();
  for (const f of spec.fields) {
    const key = f.flag.replace(/^--/, "");
    out.set(key, f.value);
    if (spec.dualPrefix !== undefined && key.startsWith(spec.dualPrefix)) out.set(key.slice(spec.dualPrefix.length), f.value);
  }
  return [...out];
}

export interface ReportArgs {
  format: string | undefined;
  infoFlags: string[];
}

/** Splits report args into `--format X` and info flags; a trailing `--format` panics (→2). */
export function parseReportArgs(args: string[]): { rest: string[]; opts: ReportArgs } {
  const rest: string[] = [];
  const opts: ReportArgs = { format: undefined, infoFlags: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--format") {
      if (i + 1 >= args.length) throw new Fail(2, [], "panic: runtime error: index out of range [1] with length 1\n");
      opts.format = args[++i];
    } else if (a.startsWith("--")) opts.infoFlags.push(a);
    else rest.push(a);
  }
  return { rest, opts };
}

/** Prints one app's report; throws `Fail` for the documented flag errors. */
export function printReport(io: Io, spec: ReportSpec, opts: ReportArgs): void {
  if (opts.infoFlags.length > 0) return printInfoFlag(io, spec, opts);
  if (opts.format === "json") {
    if (!spec.go) throw fail(`Invalid flag passed, valid flags: --format`);
    io.line(goJsonObject(jsonEntries(spec)));
    return;
  }
  if (opts.format !== undefined && opts.format !== "stdout") throw fail(`Invalid --format value specified`);
  io.info2Quiet(`${spec.app} ${spec.type} information`);
  const sorted = [...spec.fields].sort((a, b) => byteOrder(keyOf(a.flag), keyOf(b.flag)));
  if (spec.go) {
    const width = Math.max(spec.minWidth ?? 31, ...spec.fields.map((f) => f.flag.length));
    for (const f of sorted) io.verbose(`${`${keyOf(f.flag)}:`.padEnd(width)}${f.value}`);
  } else {
    for (const f of spec.fields) io.verbose(`${`${keyOf(f.flag)}:`.padEnd(30)} ${f.value.padEnd(25)}`);
  }
}

function printInfoFlag(io: Io, spec: ReportSpec, opts: ReportArgs): void {
  if (opts.format !== undefined && spec.go) throw fail("--format flag cannot be specified when specifying an info flag");
  // Bug kept from upstream: two info flags print nothing and exit 0.
  if (opts.infoFlags.length > 1 && spec.go) return;
  const flag = opts.infoFlags[0] as string;
  const field = spec.fields.find((f) => f.flag === flag);
  if (field === undefined) {
    throw fail(`Invalid flag passed, valid flags: ${spec.fields.map((f) => f.flag).join(", ")}`);
  }
  if (!spec.go && field.value === "") throw fail("not deployed");
  io.line(field.value);
}
