/**
 * FakeCommandRunner: replays captured Dokku output from test/fixtures/dokku/<version>/ and records
 * every argv it was asked to run. Responses are matched on the rendered command line (exact), or
 * by a predicate; an unmatched command answers like Dokku does for unknown commands.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { renderCommand } from "../../src/drivers/dokku/commands.ts";
import type { CommandRunner, RunOptions, RunResult } from "../../src/drivers/dokku/ssh.ts";

const FIXTURES = fileURLToPath(new URL("../fixtures/dokku/", import.meta.url));

/** Reads `<version>/<name>` from the fixtures, or "" when `name` is undefined. */
export function fixture(version: string, name: string | undefined): string {
  return name === undefined ? "" : readFileSync(`${FIXTURES}${version}/${name}`, "utf8");
}

export interface Reply {
  readonly exitCode?: number;
  readonly stdout?: string;
  readonly stderr?: string;
  /** Binary stdout, written to `opts.stdout` when streaming (else `stdout` is). */
  readonly binary?: Buffer;
}

type Matcher = string | ((line: string) => boolean);

export class FakeCommandRunner implements CommandRunner {
  readonly calls: string[] = [];
  private readonly replies: Array<{ match: Matcher; reply: Reply | (() => Reply) }> = [];
  closed = false;

  constructor(readonly version: string) {
    this.on("version", { stdout: fixture(version, "version.out") });
  }

  /** Adds a reply; later replies for the same command win. */
  on(match: Matcher, reply: Reply | (() => Reply)): this {
    this.replies.unshift({ match, reply });
    return this;
  }

  /** Reply from fixture files: `out` on stdout, `err` on stderr. */
  onFixture(match: Matcher, files: { out?: string; err?: string; exitCode?: number }): this {
    return this.on(match, { stdout: fixture(this.version, files.out), stderr: fixture(this.version, files.err), exitCode: files.exitCode ?? 0 });
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    const line = renderCommand(argv);
    this.calls.push(line);
    const entry = this.replies.find(({ match }) => (typeof match === "string" ? match === line : match(line)));
    if (!entry) return { exitCode: 1, stdout: "", stderr: ` !     \`${line}\` is not a dokku command.\n` };
    const reply = typeof entry.reply === "function" ? entry.reply() : entry.reply;
    // As SshPool: with `opts.stdout`, the output goes there and the result's stdout is empty.
    if (opts.stdout) {
      const bytes = reply.binary ?? Buffer.from(reply.stdout ?? "", "utf8");
      if (bytes.length > 0) opts.stdout.write(bytes);
      return { exitCode: reply.exitCode ?? 0, stdout: "", stderr: reply.stderr ?? "" };
    }
    return { exitCode: reply.exitCode ?? 0, stdout: reply.stdout ?? "", stderr: reply.stderr ?? "" };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
