/** Pure: the Dokku version a host reports, and feature gates on it (reference §14). */
import { TerminalError } from "../../errors.ts";

export interface DokkuVersion {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** As printed by the host, e.g. `0.38.27`. */
  readonly text: string;
}

/** Parses the output of `dokku version` (`dokku version 0.38.27`). Never use `--version`. */
export function parseVersion(stdout: string): DokkuVersion {
  const match = /(\d+)\.(\d+)(?:\.(\d+))?/.exec(stdout);
  if (!match) throw new TerminalError("UnknownDokkuVersion", "the host's `version` output names no Dokku version");
  const [, major = "0", minor = "0", patch = "0"] = match;
  return { major: Number(major), minor: Number(minor), patch: Number(patch), text: match[0] };
}

export function versionAtLeast(version: DokkuVersion, major: number, minor: number, patch: number): boolean {
  if (version.major !== major) return version.major > major;
  if (version.minor !== minor) return version.minor > minor;
  return version.patch >= patch;
}
