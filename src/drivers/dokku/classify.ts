/**
 * Pure: what a Dokku answer means for a mutating command. One table, read top to bottom; the
 * first matching row wins. Success is judged by exit code (reference §13.5), except for the
 * answers that mean "already so" (§13.7), which count as success whatever the exit code.
 */

export type Verdict =
  | { readonly outcome: "ok" }
  | { readonly outcome: "alreadyDone"; readonly reason: string }
  | { readonly outcome: "retryable"; readonly reason: string }
  | { readonly outcome: "terminal"; readonly reason: string };

export interface CommandResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface Row {
  /** Subcommands the row applies to; undefined means any. */
  readonly commands?: readonly string[];
  /** Exit codes the row applies to; undefined means any non-zero (and zero where `text` is set). */
  readonly exitCodes?: readonly number[];
  /** Searched in stdout and stderr (0.38+ build capture moves stderr to stdout). */
  readonly text?: RegExp;
  readonly verdict: Verdict;
}

const already = (reason: string): Verdict => ({ outcome: "alreadyDone", reason });
const retry = (reason: string): Verdict => ({ outcome: "retryable", reason });
const terminal = (reason: string): Verdict => ({ outcome: "terminal", reason });

export const CLASSIFICATION: readonly Row[] = [
  // "Already so" answers (reference §13.7).
  { commands: ["apps:create"], text: /Name is already taken/, verdict: already("AppExists") },
  { commands: ["git:from-image"], text: /No changes detected/, verdict: already("ImageUnchanged") },
  { commands: ["storage:mount"], text: /Mount path already exists/, verdict: already("MountExists") },
  { commands: ["storage:unmount"], text: /Mount path does not exist/, verdict: already("MountAbsent") },
  { commands: ["storage:unmount"], exitCodes: [20], verdict: already("AppAbsent") },
  { commands: ["storage:destroy"], text: /does not exist|not found/i, verdict: already("StorageAbsent") },
  { commands: ["apps:destroy"], exitCodes: [20], verdict: already("AppAbsent") },
  { commands: ["ps:start"], text: /already running/, verdict: already("AlreadyRunning") },
  { commands: ["ps:stop"], text: /has not been deployed/, verdict: already("NotDeployed") },
  // Success by exit code.
  { exitCodes: [0], verdict: { outcome: "ok" } },
  // Time fixes these.
  { text: /currently has a deploy lock in place/, verdict: retry("DeployLocked") },
  { text: /Failed to acquire ps:retire lock/, verdict: retry("RetireLocked") },
  { exitCodes: [137], verdict: retry("RetireLocked") },
  { text: /rate-limited/i, verdict: retry("RateLimited") },
  // The app vanished under us: retry, so the next pass observes and re-plans (drift repair).
  { exitCodes: [20], verdict: retry("AppNotFound") },
  // Time does not fix these.
  { text: /is not a dokku command/, verdict: terminal("PluginMissing") },
  { exitCodes: [2], text: /unknown flag/, verdict: terminal("DokkuTooOld") },
  { text: /must be run as root/, verdict: terminal("WrongAccount") },
  { text: /Access denied/, verdict: terminal("AccessDenied") },
  { text: /App name must begin with|Please specify an app/, verdict: terminal("InvalidAppName") },
  { text: /Invalid key name|Invalid env pair|illegal base64|At least one env pair/, verdict: terminal("InvalidConfig") },
  { text: /Failed to pull image|Please specify a docker image|Invalid BUILD_DIR/, verdict: terminal("ImageNotFound") },
  { text: /is invalid\. exiting|Please specify a domain name/, verdict: terminal("InvalidDomain") },
  { text: /Directory can only contain|Storage path must be|Unsupported chown|Volume name must be/, verdict: terminal("InvalidStorage") },
  { text: /No domains detected|without an e-mail address|no http or https proxy port mapping/, verdict: terminal("TlsNotConfigured") },
  { text: /xargs: /, verdict: terminal("ArgumentMangled") },
  // Anything else: a generic failure; retry with backoff.
  { verdict: retry("CommandFailed") },
];

function matches(row: Row, subcommand: string, result: CommandResult): boolean {
  if (row.commands && !row.commands.includes(subcommand)) return false;
  if (row.exitCodes) {
    if (!row.exitCodes.includes(result.exitCode)) return false;
  } else if (!row.text && result.exitCode === 0) {
    return false;
  }
  return row.text ? row.text.test(result.stderr) || row.text.test(result.stdout) : true;
}

/** Classifies a completed command (an exit status arrived). */
export function classify(subcommand: string, result: CommandResult): Verdict {
  for (const row of CLASSIFICATION) {
    if (matches(row, subcommand, result)) return row.verdict;
  }
  return retry("CommandFailed");
}
