/**
 * Dokku versions the sandbox can impersonate, and the feature knobs of reference §14 that depend
 * on them. Pure.
 */

/** The three versions the reference documents in detail; any other `X.Y.Z` is accepted too. */
export const KNOWN_VERSIONS = ["0.30.0", "0.34.0", "0.38.27"] as const;
export type DokkuVersion = (typeof KNOWN_VERSIONS)[number];

const SHORTHANDS: Record<string, string> = { "0.30": "0.30.0", "0.34": "0.34.0", "0.38": "0.38.27" };

export const DEFAULT_VERSION: DokkuVersion = "0.38.27";

/** Accepts `0.30`, `0.34`, `0.38` shorthands and any `X.Y.Z`; throws on anything else. */
export function normalizeVersion(input: string | undefined): string {
  if (input === undefined || input === "") return DEFAULT_VERSION;
  const v = SHORTHANDS[input] ?? input;
  if (!/^\d+\.\d+\.\d+$/.test(v)) throw new Error(`invalid dokku version: ${input} (want X.Y.Z or 0.30/0.34/0.38)`);
  return v;
}

function parts(v: string): number[] {
  return v.split(".").map((p) => Number(p));
}

/** True when `version >= min` (numeric comparison of X.Y.Z). */
export function atLeast(version: string, min: string): boolean {
  const a = parts(version);
  const b = parts(min);
  for (let i = 0; i < 3; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/** Feature switches of reference §14/§15.7 for one version. */
export interface Features {
  readonly xargsReparse: boolean; // 0.34
  readonly storageEntries: boolean; // 0.38.0: storage:exec/create/destroy, entries, Go storage report
  readonly buildCapture: boolean; // 0.38.0: stderr merged into stdout for deploy commands
  readonly domainsJson: boolean; // 0.38.0
  readonly psWidth34: boolean; // 0.38.7
  readonly psHeadKeys: boolean; // 0.38.7: the full HEAD set of ps keys
  readonly psRestartPolicyEmpty: boolean; // 0.38.9
  readonly dualJsonKeys: boolean; // 0.38.8
  readonly appsAutocreation: boolean; // 0.38.12
  readonly appsListJson: boolean; // 0.38.21
  readonly goReports: boolean; // 0.38.22: domains/git reports in Go
  readonly stopTimeoutKeys: boolean; // 0.36
}

export function features(version: string): Features {
  return {
    xargsReparse: atLeast(version, "0.34.0"),
    storageEntries: atLeast(version, "0.38.0"),
    buildCapture: atLeast(version, "0.38.0"),
    domainsJson: atLeast(version, "0.38.0"),
    psWidth34: atLeast(version, "0.38.7"),
    psHeadKeys: atLeast(version, "0.38.7"),
    psRestartPolicyEmpty: atLeast(version, "0.38.9"),
    dualJsonKeys: atLeast(version, "0.38.8"),
    appsAutocreation: atLeast(version, "0.38.12"),
    appsListJson: atLeast(version, "0.38.21"),
    goReports: atLeast(version, "0.38.22"),
    stopTimeoutKeys: atLeast(version, "0.36.0"),
  };
}
