/**
 * The periodic resync: every `intervalMs` (jittered ±10 % so replicas and restarts spread out)
 * every key is added at low priority, so real changes keep going first and anything a missed
 * notification or webhook left behind heals itself.
 */
import { setTimeout as sleep } from "node:timers/promises";
export interface ResyncOptions {
  readonly intervalMs: number;
  readonly listKeys: () => Promise<string[]>;
  readonly enqueueLow: (key: string) => void;
  readonly logger: { warn(obj: object, msg?: string): void; debug(obj: object, msg?: string): void };
  readonly random?: () => number;
}

export class Resync {
  constructor(private readonly options: ResyncOptions) {}

  /** Enqueues every key now; errors are logged and the next period tries again. */
  async resyncAll(): Promise<number> {
    try {
      const keys = await this.options.listKeys();
      for (const key of keys) this.options.enqueueLow(key);
      this.options.logger.debug({ keys: keys.length }, "resync enqueued every key");
      return keys.length;
    } catch (error) {
      this.options.logger.warn({ err: error }, "resync could not list keys");
      return 0;
    }
  }

  /** Resolves when `signal` aborts. */
  async start(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const random = this.options.random ?? Math.random;
      const delay = this.options.intervalMs * (0.9 + 0.2 * random());
      try {
        await sleep(delay, undefined, { signal });
      } catch {
        return; // aborted
      }
      await this.resyncAll();
    }
  }
}
