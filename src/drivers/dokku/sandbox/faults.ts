/**
 * Fault knobs consulted for every SSH exec: latency, a random failure rate (seeded), one-shot
 * drops, and an unresponsive host (a gate that holds connections and channels until cleared).
 */

/** Fixed ms, uniform in [min,max], or a function of the command name (`apps:list`). */
export type Latency = number | { min: number; max: number } | ((command: string) => number);

/** Command name (`ps:start`), regexp over `argv.join(" ")`, or a predicate. */
export type CommandMatcher = string | RegExp | ((argv: readonly string[]) => boolean);

export interface FailureRate {
  rate: number;
  /** `drop`: channel closed with no exit status, nothing applied; `lock`: deploy-lock error, exit 1. */
  mode?: "drop" | "lock";
  match?: CommandMatcher;
}

export interface DropOptions {
  match?: CommandMatcher;
  /** Apply the command's effect before dropping (default false: dropped before it runs). */
  applyEffect?: boolean;
  /** Close just the channel (default) or the whole connection. */
  scope?: "channel" | "connection";
}

export function matches(m: CommandMatcher | undefined, argv: readonly string[]): boolean {
  if (m === undefined) return true;
  if (typeof m === "string") return argv[0] === m;
  if (m instanceof RegExp) return m.test(argv.join(" "));
  return m(argv);
}

/** mulberry32: small deterministic PRNG for seeded failure injection. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Faults {
  latency: Latency | null = null;
  failure: FailureRate | null = null;
  private readonly drops: DropOptions[] = [];
  private gate: { promise: Promise<void>; open: () => void } | undefined;

  constructor(private readonly random: () => number) {}

  delayFor(command: string): number {
    const l = this.latency;
    if (l === null) return 0;
    if (typeof l === "number") return l;
    if (typeof l === "function") return l(command);
    return l.min + this.random() * (l.max - l.min);
  }

  async applyLatency(command: string): Promise<void> {
    const ms = this.delayFor(command);
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  }

  /** The failure mode to inject now for this command, if the dice say so. */
  rollFailure(argv: readonly string[]): "drop" | "lock" | undefined {
    const f = this.failure;
    if (f === null || !matches(f.match, argv)) return undefined;
    return this.random() < f.rate ? (f.mode ?? "drop") : undefined;
  }

  addDrop(opts: DropOptions): void {
    this.drops.push(opts);
  }

  /** Consumes the first drop rule matching this command. */
  takeDrop(argv: readonly string[]): DropOptions | undefined {
    const i = this.drops.findIndex((d) => matches(d.match, argv));
    return i === -1 ? undefined : this.drops.splice(i, 1)[0];
  }

  get unresponsive(): boolean {
    return this.gate !== undefined;
  }

  setUnresponsive(on: boolean): void {
    if (on && this.gate === undefined) {
      let open = (): void => undefined;
      const promise = new Promise<void>((r) => (open = r));
      this.gate = { promise, open };
    } else if (!on && this.gate !== undefined) {
      this.gate.open();
      this.gate = undefined;
    }
  }

  /** Resolves at once, or when the host answers again. */
  waitResponsive(): Promise<void> {
    return this.gate?.promise ?? Promise.resolve();
  }
}
