/**
 * Ordered output for one ssh2 server channel: stdout and stderr chunks go out in the order they
 * were written, each after the previous one was handed to the transport, as sshd forwards what a
 * command wrote to its pipes. `sent()` settles once everything written so far is sent, or the
 * channel closed (a client that went away never grants more window).
 *
 * Why not plain `ch.write` / `ch.stderr.write`: ssh2's server channel keeps one resumable chunk
 * per stream for when the client's window runs out, resumes only one of them per WINDOW_ADJUST
 * (stdout first), and never clears a chunk once it is sent. Stderr that waits on the window after
 * stdout once did is never resumed, and the stale stdout chunk is sent a second time instead.
 * Writing one chunk at a time and forgetting the finished chunk avoids both.
 */
import type { ServerChannel } from "ssh2";

/** ssh2's private resume state (lib/Channel.js); cleared once the chunk it names is sent. */
interface ResumeState {
  _chunk?: Buffer | undefined;
  _chunkcb?: (() => void) | undefined;
  _chunkErr?: Buffer | undefined;
  _chunkcbErr?: (() => void) | undefined;
}

export interface ChannelWriter {
  stdout(data: string | Buffer): void;
  stderr(data: string | Buffer): void;
  sent(): Promise<void>;
}

export function channelWriter(ch: ServerChannel): ChannelWriter {
  const resume = ch as unknown as ResumeState;
  const closed = new Promise<void>((resolve) => ch.once("close", resolve));
  let tail = Promise.resolve();
  const enqueue = (stream: NodeJS.WritableStream, data: string | Buffer): void => {
    tail = tail.then(async () => {
      if (ch.destroyed || !ch.writable) return;
      const written = new Promise<void>((resolve) => stream.write(data, () => resolve()));
      await Promise.race([written, closed]);
      Object.assign(resume, { _chunk: undefined, _chunkcb: undefined, _chunkErr: undefined, _chunkcbErr: undefined });
    });
  };
  return {
    stdout: (data) => enqueue(ch, data),
    stderr: (data) => enqueue(ch.stderr, data),
    sent: () => tail,
  };
}
