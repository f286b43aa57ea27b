/**
 * Peak resident memory of this process during a run, sampled every 100 ms (and on demand).
 * `process.resourceUsage().maxRSS` is a lifetime peak and cannot tell two runs in one process
 * apart, so the benchmark samples instead.
 */
export interface ResourceSample {
  readonly startBytes: number;
  readonly peakBytes: number;
}

const INTERVAL_MS = 100;

export class ResourceSampler {
  private timer: NodeJS.Timeout | undefined;
  private startBytes = 0;
  private peakBytes = 0;

  start(): void {
    this.startBytes = process.memoryUsage.rss();
    this.peakBytes = this.startBytes;
    this.timer = setInterval(() => this.sample(), INTERVAL_MS);
    this.timer.unref();
  }

  sample(): void {
    this.peakBytes = Math.max(this.peakBytes, process.memoryUsage.rss());
  }

  /** Stops sampling (idempotent) and returns the start and peak RSS. */
  stop(): ResourceSample {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.sample();
    }
    return { startBytes: this.startBytes, peakBytes: this.peakBytes };
  }
}
