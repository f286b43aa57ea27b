/**
 * Group commit for the webhook's inserts. One INSERT per request costs each event a statement, a
 * transaction with its WAL flush, and the daemon's loop a socket write and a read; under load,
 * that is most of what a request costs. The writer keeps at most `maxInFlight` inserts running and
 * sends what arrived meanwhile as the next one (at most `maxBatch` rows): at a trickle each event
 * goes alone, at the end of the loop turn it arrived in; under a burst, batches grow with the rate
 * and with the database's latency, and no request waits for a timer.
 *
 * Contract
 * - `store(row)` resolves true once the event is committed and was new, false for a duplicate id
 *   (stored before, or by another request in the same batch).
 * - It rejects with DatabaseTimeoutError when the event is not committed within `timeoutMs` of the
 *   call. A row still queued then is never sent; one whose batch was sent may still commit (the
 *   sender retries and the id makes the retry a duplicate). The writer waits for a batch at most
 *   `timeoutMs`, then gives its slot to the next; the statement itself is bounded by the server's
 *   statement_timeout (src/state/db.ts).
 * - A batch that fails with an error the data caused (`isNeverStorable`) is retried row by row,
 *   so only the rows that can never be stored fail; any other error fails every row of the batch.
 */
import { sqlState } from "../../errors.ts";
import { withDeadline } from "../../state/deadline.ts";
import type { Db } from "../../state/sql.ts";
import { insertStripeEvents, type NewStripeEvent } from "../../state/stripe-events.ts";

export interface StripeEventWriterOptions {
  readonly sql: Db;
  readonly timeoutMs: number;
  /**
   * Inserts running at once (default 2): more let rows wait less, fewer make batches larger and
   * commits fewer. Two beat four when the machine was busy: at 2,000 webhooks/s, two daemons, one
   * of each, and the baseline in turn, 12 rounds of 10 s each, gave a median round p99 of 79 ms
   * with two and 176 ms with four.
   */
  readonly maxInFlight?: number;
  /** Rows per INSERT (default 256). */
  readonly maxBatch?: number;
}

/** SQLSTATE classes an insert fails with only because of the data: retrying can never help. */
const NEVER_STORABLE_CLASSES = ["22", "54"]; // data exception, program limit exceeded

/** True when Postgres refused a row for what it holds (retrying the same row can never succeed). */
export function isNeverStorable(thrown: unknown): boolean {
  const code = sqlState(thrown);
  return code !== undefined && NEVER_STORABLE_CLASSES.includes(code.slice(0, 2));
}

interface Waiting {
  readonly row: NewStripeEvent;
  resolve(inserted: boolean): void;
  reject(error: unknown): void;
}

export class StripeEventWriter {
  private readonly queue: Waiting[] = [];
  private inFlight = 0;
  private flushScheduled = false;
  private readonly maxInFlight: number;
  private readonly maxBatch: number;

  constructor(private readonly o: StripeEventWriterOptions) {
    this.maxInFlight = o.maxInFlight ?? 2;
    this.maxBatch = o.maxBatch ?? 256;
  }

  store(row: NewStripeEvent): Promise<boolean> {
    let waiting!: Waiting;
    const stored = new Promise<boolean>((resolve, reject) => (waiting = { row, resolve, reject }));
    this.queue.push(waiting);
    this.scheduleFlush();
    // withDeadline calls `cancel` when the deadline passes: a row not yet sent leaves the queue.
    const cancellable = Object.assign(stored, { cancel: () => this.withdraw(waiting) });
    return withDeadline(this.o.timeoutMs, "storing a Stripe event", () => cancellable);
  }

  private withdraw(waiting: Waiting): void {
    const at = this.queue.indexOf(waiting);
    if (at >= 0) this.queue.splice(at, 1);
  }

  /** Flushes at the end of this loop turn, so that the rows of requests read in it go together. */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight += 1;
      void this.send(batch).finally(() => {
        this.inFlight -= 1;
        this.scheduleFlush();
      });
    }
  }

  private async send(batch: readonly Waiting[]): Promise<void> {
    try {
      settle(batch, await this.insert(batch.map((waiting) => waiting.row)));
    } catch (thrown) {
      if (batch.length > 1 && isNeverStorable(thrown)) {
        for (const waiting of batch) await this.sendAlone(waiting);
      } else {
        for (const waiting of batch) waiting.reject(thrown);
      }
    }
  }

  private async sendAlone(waiting: Waiting): Promise<void> {
    try {
      settle([waiting], await this.insert([waiting.row]));
    } catch (thrown) {
      waiting.reject(thrown);
    }
  }

  private insert(rows: readonly NewStripeEvent[]): Promise<Set<string>> {
    return withDeadline(this.o.timeoutMs, `storing ${rows.length} Stripe event(s)`, () => insertStripeEvents(this.o.sql, rows));
  }
}

/** The first row of each new id is the one that inserted it; any other row with that id is a duplicate. */
function settle(batch: readonly Waiting[], inserted: ReadonlySet<string>): void {
  const claimed = new Set<string>();
  for (const waiting of batch) {
    const { id } = waiting.row;
    const isNew = inserted.has(id) && !claimed.has(id);
    if (isNew) claimed.add(id);
    waiting.resolve(isNew);
  }
}
