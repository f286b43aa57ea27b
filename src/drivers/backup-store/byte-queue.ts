/**
 * A FIFO of bytes built from stream chunks: `take(n)` copies only when a request spans chunks, so
 * slicing a stream into fixed-size records costs one copy per record at most.
 */
export class ByteQueue {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  get length(): number {
    return this.size;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  /** The first `n` bytes without removing them. */
  peek(n: number): Buffer {
    const taken = this.take(n);
    if (taken.length > 0) {
      this.chunks.unshift(taken);
      this.size += taken.length;
    }
    return taken;
  }

  /** Removes and returns the first `n` bytes (fewer when the queue holds fewer). */
  take(n: number): Buffer {
    const wanted = Math.min(n, this.size);
    const first = this.chunks[0];
    if (first && first.length >= wanted) {
      this.consume(first, wanted);
      return first.subarray(0, wanted);
    }
    const out = Buffer.allocUnsafe(wanted);
    let filled = 0;
    while (filled < wanted) {
      const chunk = this.chunks[0]!;
      const part = Math.min(chunk.length, wanted - filled);
      chunk.copy(out, filled, 0, part);
      this.consume(chunk, part);
      filled += part;
    }
    return out;
  }

  private consume(chunk: Buffer, bytes: number): void {
    if (bytes === chunk.length) this.chunks.shift();
    else this.chunks[0] = chunk.subarray(bytes);
    this.size -= bytes;
  }
}
