/**
 * Peak resident memory of this process during a run, sampled every 100 ms (and on demand).
 * `process.resourceUsage().maxRSS` is a lifetime peak and cannot tell two runs in one process
 * apart, so the benchmark samples instead.
 */
export interface ResourceSample {
  readonly startBytes: number;
  readonly peakBytes: number;
  /** `process.memoryUsage()` when the peak was seen: where the resident memory was. */
  readonly atPeak: NodeJS.MemoryUsage;
}

const INTERVAL_MS = 100;

export class ResourceSampler {
  private timer: NodeJS.Timeout | undefined;
  private startBytes = 0;
  private peakBytes = 0;
  private atPeak: NodeJS.MemoryUsage = process.memoryUsage();

  start(): void {
    this.atPeak = process.memoryUsage();
    this.startBytes = this.atPeak.rss;
    this.peakBytes = this.startBytes;
    this.timer = setInterval(() => this.sample(), INTERVAL_MS);
    this.timer.unref();
  }

  sample(): void {
    const rss = process.memoryUsage.rss();
    if (rss <= this.peakBytes) return;
    this.peakBytes = rss;
    this.atPeak = process.memoryUsage();
  }

  /** Stops sampling (idempotent) and returns the start and peak RSS. */
  stop(): ResourceSample {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.sample();
    }
    return { startBytes: this.startBytes, peakBytes: this.peakBytes, atPeak: this.atPeak };
  }
}
