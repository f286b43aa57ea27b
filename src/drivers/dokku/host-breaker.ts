/**
 * Fail fast on a host that does not answer: a circuit breaker per host, so that a host that
 * hangs costs the command timeout once per retry period, not once per command, and the workers
 * it would hold stay free for instances on other hosts.
 *
 * Modes:
 * - closed: every command runs.
 * - open: after a failure that says the host is unreachable (`SshError.hostDown`), commands fail
 *   at once with `HostDown` until `retryAt` (jittered exponential backoff, 1 s doubling to 30 s).
 * - trial: the first command after `retryAt` runs; the others keep failing at once meanwhile.
 *   An exit status from the host (whatever its value) closes the breaker; another host-down failure
 *   opens it for longer. The pool's liveness probe (ssh.ts) also opens it when the host of a
 *   stalled command does not complete a fresh handshake.
 *
 * Not a library: cockatiel's half-open state makes every other caller wait for the trial (up to
 * the whole command timeout, the very block this prevents), and opossum opens on an error
 * percentage over a rolling window, with its own timeout and timers, not on one host-down signal.
 */
export type Admission = "normal" | "trial";

export class HostBreaker {
  private failures = 0;
  private retryAt = 0;
  private trialRunning = false;

  /** `delay(n)`: how long to fail fast after the nth failed attempt in a row. */
  constructor(
    private readonly delay: (failures: number) => number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether a command may run now, and as what; or how long until the next trial (ms, 0 while a
   * trial runs) when it may not. Pass an admission to `settle` once its command has run.
   */
  admit(): { admission: Admission } | { refusedForMs: number } {
    if (this.failures === 0) return { admission: "normal" };
    const waitMs = this.retryAt - this.now();
    if (this.trialRunning) return { refusedForMs: 0 };
    if (waitMs > 0) return { refusedForMs: waitMs };
    this.trialRunning = true;
    return { admission: "trial" };
  }

  /**
   * The outcome of an admitted command: `answered` (an exit status, whatever its value),
   * `unreachable` (`SshError.hostDown`), or `unknown` (anything else: a stalled or dropped
   * channel, the caller giving up). Commands already running when the breaker opened close it when
   * they get an answer, and do not extend the backoff when they fail too (one outage, one step).
   */
  settle(admission: Admission, outcome: "answered" | "unreachable" | "unknown"): void {
    if (admission === "trial") this.trialRunning = false;
    if (outcome === "unknown") return;
    if (outcome === "answered") {
      this.failures = 0;
      return;
    }
    if (admission === "normal" && this.failures > 0) return;
    this.failures += 1;
    this.retryAt = this.now() + this.delay(this.failures);
  }

  /** Opens the breaker from outside a command (a liveness probe found the host silent). */
  trip(): void {
    if (this.failures > 0) return;
    this.failures = 1;
    this.retryAt = this.now() + this.delay(1);
  }

  /** True while commands fail fast. */
  get open(): boolean {
    return this.failures > 0;
  }
}
