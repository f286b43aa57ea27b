/** The logger the reconciler takes (pino satisfies it), and a child logger made on its first line. */

export type LogLevel = "debug" | "info" | "warn" | "error";

/** A pino-compatible logger, reduced to what the controller calls. */
export interface LoggerLike {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): LoggerLike;
  /** pino's: whether a line at `level` would be written. Absent: assume it would. */
  isLevelEnabled?(level: LogLevel): boolean;
}

/**
 * pino's `child` serializes its bindings when it is made, and with redaction configured
 * (src/logger.ts) redacts them too. For the logger of each reconcile, most of whose lines are debug
 * lines the daemon does not write, that was most of what a reconcile with nothing to do allocated
 * (bench webhook at 500/s, sampled heap profile of the daemon). This one asks its parent whether a
 * level is enabled, and makes the real child only to write a line or to make a child of its own.
 */
export class DeferredChildLogger implements LoggerLike {
  private made: LoggerLike | undefined;

  constructor(
    private readonly parent: LoggerLike,
    private readonly bindings: Record<string, unknown>,
  ) {}

  debug(obj: object, msg?: string): void {
    this.write("debug", obj, msg);
  }
  info(obj: object, msg?: string): void {
    this.write("info", obj, msg);
  }
  warn(obj: object, msg?: string): void {
    this.write("warn", obj, msg);
  }
  error(obj: object, msg?: string): void {
    this.write("error", obj, msg);
  }
  child(bindings: Record<string, unknown>): LoggerLike {
    return this.real().child(bindings);
  }
  /** The parent's answer; true when the parent cannot tell (every line is then written). */
  isLevelEnabled(level: LogLevel): boolean {
    return this.parent.isLevelEnabled?.(level) ?? true;
  }

  private write(level: LogLevel, obj: object, msg: string | undefined): void {
    if (this.isLevelEnabled(level)) this.real()[level](obj, msg);
  }

  private real(): LoggerLike {
    return (this.made ??= this.parent.child(this.bindings));
  }
}
