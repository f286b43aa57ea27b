/**
 * Output of one command, with Dokku's log helpers (reference §1): `-----> ` and `=====> ` and
 * 7-space lines on stdout, ` !     ` on stderr. `Fail` carries an exit code up to the dispatcher.
 */

export interface Sink {
  stdout(chunk: string | Buffer): void;
  stderr(chunk: string | Buffer): void;
}

export class Io {
  /** When true (0.38+ build capture), stderr lines go to stdout. */
  merged = false;
  constructor(
    private readonly sink: Sink,
    readonly quiet: boolean,
  ) {}

  out(chunk: string | Buffer): void {
    this.sink.stdout(chunk);
  }
  err(chunk: string | Buffer): void {
    if (this.merged) this.sink.stdout(chunk);
    else this.sink.stderr(chunk);
  }
  line(text: string): void {
    this.out(`${text}\n`);
  }
  info1(text: string): void {
    this.line(`-----> ${text}`);
  }
  info1Quiet(text: string): void {
    if (!this.quiet) this.info1(text);
  }
  info2(text: string): void {
    this.line(`=====> ${text}`);
  }
  info2Quiet(text: string): void {
    if (!this.quiet) this.info2(text);
  }
  verbose(text: string): void {
    this.line(`       ${text}`);
  }
  verboseQuiet(text: string): void {
    if (!this.quiet) this.verbose(text);
  }
  warn(text: string): void {
    this.err(` !     ${text}\n`);
  }
}

/** A command failure: the lines go to stderr (` !     ` prefixed), then the exit code. */
export class Fail extends Error {
  constructor(
    readonly code: number,
    readonly lines: string[],
    /** Raw text written instead of ` !     ` lines (pflag errors, usage). */
    readonly raw?: string,
  ) {
    super(lines.join("; ") || raw || `exit ${code}`);
  }
}

export const fail = (text: string, code = 1): Fail => new Fail(code, [text]);

export const appMissing = (app: string): Fail => new Fail(20, [`App ${app} does not exist`]);
