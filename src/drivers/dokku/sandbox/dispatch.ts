/**
 * One SSH exec end to end: forced-command splitting, global flags, version gates, the plugin
 * handler, and Dokku's exit codes. `execute` never throws for command errors; it returns the code.
 */
import type { Readable } from "node:stream";

import { appsCommands, reportCommand } from "./cmd-apps.ts";
import { configCommands } from "./cmd-config.ts";
import { domainCommands, resourceFields } from "./cmd-domains.ts";
import { psCommands } from "./cmd-ps.ts";
import { storageCommands } from "./cmd-storage.ts";
import type { CommandDef, Ctx, Host } from "./context.ts";
import type { Sink } from "./io.ts";
import { Fail, Io } from "./io.ts";
import { resolveCommand } from "./split.ts";
import { atLeast, features } from "./version.ts";

export const COMMANDS: Record<string, CommandDef> = {
  ...appsCommands,
  ...psCommands,
  ...configCommands,
  ...domainCommands,
  ...storageCommands,
  "resource:report": reportCommand("resource", resourceFields, "resource-"),
  help: { run: (ctx) => printHelp(ctx.io) },
};

function printHelp(io: Io): void {
  io.line("Usage: dokku [--quiet|--trace|--force] COMMAND <app> [command-specific-options]");
  io.line("");
  io.line("Primary help options, type \"dokku COMMAND:help\" for more details, or dokku help --all to see all commands.");
}

export interface Execution {
  /** Argv after splitting (command first); what the command log records. */
  readonly argv: string[];
  readonly exitCode: number;
}

export interface ExecuteOptions {
  readonly host: Host;
  readonly version: string;
  readonly raw: string;
  readonly sink: Sink;
  readonly stdin: Readable;
  /** Simulated duration of the command (latency faults). */
  readonly work: (argv: string[]) => Promise<void>;
}

export function lookup(argv: readonly string[], version: string): CommandDef | undefined {
  const def = COMMANDS[argv[0] ?? ""];
  if (def === undefined || (def.since !== undefined && !atLeast(version, def.since))) return undefined;
  return def;
}

export async function execute(opts: ExecuteOptions): Promise<Execution> {
  const { argv, flags, stderr } = resolveCommand(opts.raw, opts.version);
  if (stderr !== "") opts.sink.stderr(stderr);
  const io = new Io(opts.sink, flags.quiet);
  // --trace: `set -x` output, secrets included, as on a real host.
  if (flags.trace) io.err(`+ export DOKKU_TRACE=1\n+ /usr/bin/dokku ${argv.join(" ")}\n`);
  const feat = features(opts.version);
  const ctx: Ctx = { version: opts.version, feat, flags, io, host: opts.host, stdin: opts.stdin, work: () => opts.work(argv) };
  if (argv.length === 0) {
    printHelp(io);
    return { argv, exitCode: 0 };
  }
  const def = lookup(argv, opts.version);
  if (def === undefined) {
    io.err(` !     \`${argv.join(" ")}\` is not a dokku command.\n !     See \`dokku help\` for a list of available commands.\n`);
    return { argv, exitCode: 1 };
  }
  if (def.capture === true && feat.buildCapture) io.merged = true;
  try {
    if (def.deploy !== true) await ctx.work();
    const code = await def.run(ctx, argv.slice(1));
    return { argv, exitCode: typeof code === "number" ? code : 0 };
  } catch (e) {
    if (!(e instanceof Fail)) {
      io.err(` !     ${e instanceof Error ? e.message : String(e)}\n`);
      return { argv, exitCode: 1 };
    }
    if (e.raw !== undefined) io.err(e.raw);
    for (const line of e.lines) io.err(` !     ${line}\n`);
    return { argv, exitCode: e.code };
  }
}
