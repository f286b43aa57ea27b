/**
 * How Dokku's forced command turns `$SSH_ORIGINAL_COMMAND` into argv (reference §3). Pure.
 *
 * Pass 1: bash word-splits the unquoted string (space, tab, newline; quotes stay literal) and
 * `parse_args` scans every word for global flags. Pass 2 re-runs dokku on re-split arguments:
 * - 0.34+, first word containing `git`: the same whitespace split (rule a);
 * - 0.34+, otherwise: `printf '%s' "$CMD" | xargs -n 1` + `/usr/bin/echo` per argument, read
 *   back line by line (rule b), with every quirk of the §3.2 table;
 * - before 0.34: `xargs $0` (quotes handled, no echo) for `config*`/`docker-options*` only.
 * Leading `--flags` are shifted off (`--app` takes its value along).
 */
import { atLeast } from "./version.ts";

export interface GlobalFlags {
  quiet: boolean;
  trace: boolean;
  force: boolean;
  /** `--app X`: core plugins get X as their first argument. */
  app: string | undefined;
}

export interface ResolvedCommand {
  /** Command name then its arguments, as the dokku plugin receives them. */
  readonly argv: string[];
  readonly flags: GlobalFlags;
  /** What xargs wrote to stderr while splitting (empty when nothing). */
  readonly stderr: string;
}

/** GNU xargs' line buffer (bytes), shared by the command word, the argument and their NULs. */
export const XARGS_BUFFER = 131072;

const UNMATCHED = (kind: string): string =>
  `xargs: unmatched ${kind} quote; by default quotes are special to xargs unless you use the -0 option\n`;
const TOO_LONG = "xargs: argument line too long\n";

/** bash word splitting with the default IFS and `set -f` (no globbing, no quote removal). */
export function bashWords(s: string): string[] {
  return s.split(/[ \t\n]+/).filter((w) => w !== "");
}

export interface XargsResult {
  readonly args: string[];
  readonly stderr: string;
}

/**
 * GNU xargs (no -0/-d) argument parsing. Blanks are space, tab and newline; `'…'`/`"…"` group
 * and are removed, with no escapes inside; `\x` outside quotes is `x`. A newline inside quotes or
 * EOF inside a started quoted argument is the "unmatched quote" error, and an argument that does not fit the buffer
 * next to `commandBytes` is "argument line too long": in both cases the arguments completed
 * before are kept and everything from the failing one on is lost.
 */
export function xargsSplit(input: string, commandBytes: number): XargsResult {
  const args: string[] = [];
  let cur: string | undefined;
  let quote: "'" | '"' | undefined;
  const tooLong = (s: string): boolean => Buffer.byteLength(s) + 1 + commandBytes > XARGS_BUFFER;
  const finish = (): boolean => {
    if (cur === undefined) return true;
    if (tooLong(cur)) return false;
    args.push(cur);
    cur = undefined;
    return true;
  };
  for (let i = 0; i < input.length; i++) {
    const c = input[i] as string;
    if (quote !== undefined) {
      if (c === "\n") return { args, stderr: UNMATCHED(quote === "'" ? "single" : "double") };
      if (c === quote) quote = undefined;
      else cur = (cur ?? "") + c;
    } else if (c === " " || c === "\t" || c === "\n") {
      if (!finish()) return { args, stderr: TOO_LONG };
    } else if (c === "'" || c === '"') {
      quote = c;
      cur = cur ?? "";
    } else if (c === "\\") {
      i++;
      if (i < input.length) cur = (cur ?? "") + (input[i] as string);
    } else {
      cur = (cur ?? "") + c;
    }
  }
  // At EOF an argument with no bytes yet is plain EOF: a trailing `''` or lone `"` vanishes.
  if (cur === undefined || cur === "") return { args, stderr: "" };
  if (quote !== undefined) return { args, stderr: UNMATCHED(quote === "'" ? "single" : "double") };
  if (!finish()) return { args, stderr: TOO_LONG };
  return { args, stderr: "" };
}

/** `echo --help` of GNU coreutils (as run by xargs: argv[0] is `echo`). */
export const ECHO_HELP = `Usage: echo [SHORT-OPTION]... [STRING]...
  or:  echo LONG-OPTION
Echo the STRING(s) to standard output.

  -n             do not output the trailing newline
  -e             enable interpretation of backslash escapes
  -E             disable interpretation of backslash escapes (default)
      --help        display this help and exit
      --version     output version information and exit

If -e is in effect, the following sequences are recognized:

  \\\\      backslash
  \\a      alert (BEL)
  \\b      backspace
  \\c      produce no further output
  \\e      escape
  \\f      form feed
  \\n      new line
  \\r      carriage return
  \\t      horizontal tab
  \\v      vertical tab
  \\0NNN   byte with octal value NNN (1 to 3 digits)
  \\xHH    byte with hexadecimal value HH (1 to 2 digits)

NOTE: your shell may have its own version of echo, which usually supersedes
the version described here.  Please refer to your shell's documentation
for details about the options it supports.

NOTE: printf(1) is a preferred alternative,
which does not have issues outputting option-like strings.

GNU coreutils online help: <https://www.gnu.org/software/coreutils/>
Report any translation bugs to <https://translationproject.org/team/>
Full documentation <https://www.gnu.org/software/coreutils/echo>
or available locally via: info '(coreutils) echo invocation'`.split("\n");

export const ECHO_VERSION = `echo (GNU coreutils) 9.1
Copyright (C) 2022 Free Software Foundation, Inc.
License GPLv3+: GNU GPL version 3 or later <https://gnu.org/licenses/gpl.html>.
This is free software: you are free to change and redistribute it.
There is NO WARRANTY, to the extent permitted by law.

Written by Brian Fox and Chet Ramey.`.split("\n");

/** What `readarray -t` reads back from `/usr/bin/echo ARG` (ARG is echo's only argument). */
export function echoLines(arg: string): string[] {
  if (/^-[neE]+$/.test(arg)) return arg.includes("n") ? [] : [""];
  if (arg === "--help") return [...ECHO_HELP];
  if (arg === "--version") return [...ECHO_VERSION];
  return arg.split("\n");
}

/** Rule (b) of §3.1: `printf '%s' "$CMD" | xargs -n 1` then `readarray -t`. */
export function xargsEchoSplit(input: string): XargsResult {
  const r = xargsSplit(input, Buffer.byteLength("echo") + 1);
  // Without -r, xargs runs `echo` once with no argument when it read none (except on overflow).
  if (r.args.length === 0 && r.stderr === "") return { args: [""], stderr: "" };
  return { args: r.args.flatMap(echoLines), stderr: r.stderr };
}

/** `parse_args`: every word is scanned, wherever it stands. */
export function scanGlobalFlags(words: readonly string[], into?: GlobalFlags): GlobalFlags {
  const flags: GlobalFlags = into ?? { quiet: false, trace: false, force: false, app: undefined };
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === "--quiet") flags.quiet = true;
    else if (w === "--trace") flags.trace = true;
    else if (w === "--force") flags.force = true;
    else if (w === "--app") {
      flags.app = words[i + 1] ?? "";
      i++;
    }
  }
  return flags;
}

/** Shifts off the leading `--…` words (`--app` with its value). */
export function stripLeadingFlags(words: readonly string[]): string[] {
  let i = 0;
  while (i < words.length && (words[i] as string).startsWith("--")) i += words[i] === "--app" ? 2 : 1;
  return words.slice(i);
}

/** The whole forced-command pipeline for one version: raw SSH command → plugin argv. */
export function resolveCommand(raw: string, version: string): ResolvedCommand {
  const words1 = bashWords(raw);
  const flags = scanGlobalFlags(words1);
  const first = stripLeadingFlags(words1)[0] ?? "";
  let words2 = words1;
  let stderr = "";
  if (atLeast(version, "0.34.0")) {
    if (!/git/.test(first)) ({ args: words2, stderr } = xargsEchoSplit(raw));
  } else if (/config|docker-option/.test(first)) {
    ({ args: words2, stderr } = xargsSplit(raw, Buffer.byteLength("/usr/bin/dokku") + 1));
  }
  scanGlobalFlags(words2, flags);
  const argv = stripLeadingFlags(words2);
  if (flags.app !== undefined && argv.length > 0) argv.splice(1, 0, flags.app);
  return { argv, flags, stderr };
}
