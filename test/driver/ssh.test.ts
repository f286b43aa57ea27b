import { Writable } from "node:stream";

import { afterEach, describe, expect, test, vi } from "vitest";

import { fingerprint, keyBlobOf } from "../../src/drivers/dokku/hostkey.ts";
import { type PoolOptions, SshError, SshPool } from "../../src/drivers/dokku/ssh.ts";
import { OutcomeUnknownError, TerminalError } from "../../src/errors.ts";
import { clientKey, type ExecChannel, startTestServer, type TestServer } from "./ssh-server.ts";

const privateKey = clientKey();
const quiet = { info() {}, warn() {}, error() {}, debug() {} };
const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function server(handler: (exec: ExecChannel) => void): Promise<TestServer> {
  const s = await startTestServer(handler);
  cleanup.push(() => s.close());
  return s;
}

function pool(s: TestServer, overrides: Partial<PoolOptions> = {}): SshPool {
  const p = new SshPool({
    host: { id: "h1", name: "test-host", sshUrl: s.url, hostKey: s.hostKey },
    privateKey,
    logger: quiet,
    connections: 1,
    channelsPerConnection: 8,
    defaultTimeoutMs: 20_000,
    keepaliveIntervalMs: 0,
    readyTimeoutMs: 10_000,
    ...overrides,
  });
  cleanup.push(() => p.close());
  return p;
}

async function caught(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection");
}

const echo = (exec: ExecChannel): void => {
  exec.stdout(`       Key:   ${exec.command}   \n`);
  exec.stderr(" !     warning\n");
  exec.exit(exec.command.endsWith("fail") ? 1 : 0);
};

describe("SshPool over real SSH", () => {
  test("returns exit code and both streams untrimmed", async () => {
    const s = await server(echo);
    expect(await pool(s).run(["ps:report", "app-1"])).toEqual({ exitCode: 0, stdout: "       Key:   ps:report app-1   \n", stderr: " !     warning\n" });
    expect((await pool(s).run(["apps:create", "fail"])).exitCode).toBe(1);
  });

  test("20 concurrent commands on one connection never open more than 8 channels", async () => {
    let held: ExecChannel[] = [];
    const s = await server((exec) => {
      held.push(exec);
      // Release in batches so that the pool is saturated when we answer.
      if (held.length === 8 || s.commands.length === 20) {
        for (const h of held) echo(h);
        held = [];
      }
    });
    const p = pool(s);
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => p.run(["ps:report", `app-${i}`])));
    expect(results.every((r) => r.exitCode === 0)).toBe(true);
    expect(p.peakChannels).toBe(8);
    expect(s.peakSessionsPerConnection).toBeLessThanOrEqual(8);
    expect(s.connections).toBe(1);
  });

  test("a pool of 2 spreads commands over two connections", async () => {
    const s = await server((exec) => setTimeout(() => echo(exec), 20));
    const p = pool(s, { connections: 2 });
    await Promise.all(Array.from({ length: 20 }, (_, i) => p.run(["ps:report", `app-${i}`])));
    expect(s.connections).toBe(2);
    expect(s.peakSessionsPerConnection).toBeLessThanOrEqual(8);
  });

  test("trust on first use reports the key; a changed key is refused naming both fingerprints", async () => {
    const s = await server(echo);
    const learned: Array<[string, string]> = [];
    const tofu = pool(s, { host: { id: "h1", name: "test-host", sshUrl: s.url, hostKey: null }, onHostKeyLearned: (id, key) => void learned.push([id, key]) });
    await tofu.run(["version"]);
    await tofu.run(["version"]);
    expect(learned).toHaveLength(1);
    expect(learned[0]![0]).toBe("h1");
    expect(keyBlobOf(learned[0]![1]).equals(keyBlobOf(s.hostKey))).toBe(true);

    const other = await server(echo);
    const pinned = pool(s, { host: { id: "h1", name: "test-host", sshUrl: s.url, hostKey: other.hostKey } });
    const before = s.commands.length;
    const err = await caught(pinned.run(["version"]));
    expect(err).toBeInstanceOf(TerminalError);
    expect((err as TerminalError).reason).toBe("HostKeyMismatch");
    expect(err.message).toContain("test-host");
    expect(err.message).toContain(fingerprint(keyBlobOf(other.hostKey)));
    expect(err.message).toContain(fingerprint(keyBlobOf(s.hostKey)));
    expect(s.commands.length).toBe(before);
  });

  test("a command whose connection drops has an unknown outcome; the next command reconnects", async () => {
    const s = await server((exec) => (exec.command === "ps:stop app-1" ? exec.drop() : echo(exec)));
    const p = pool(s);
    expect(await caught(p.run(["ps:stop", "app-1"]))).toBeInstanceOf(OutcomeUnknownError);
    expect((await p.run(["version"])).exitCode).toBe(0);
    expect(s.connections).toBe(2);
  });

  test("a slow command times out; an unresponsive host times out as down", async () => {
    const s = await server((exec) => (exec.command === "slow" ? setTimeout(() => echo(exec), 3000) : echo(exec)));
    const states: boolean[] = [];
    const p = pool(s, { onHostState: (up) => void states.push(up) });
    await p.run(["version"]); // connected: the timeout below is the command's, not the handshake's
    const slow = await caught(p.run(["slow"], { timeoutMs: 200 }));
    expect(slow).toBeInstanceOf(SshError);
    expect((slow as SshError).reason).toBe("Timeout");
    expect((slow as SshError).hostDown).toBe(false);
    await vi.waitFor(() => expect(states).toEqual([true]), { timeout: 10_000 }); // the probe found the host alive
    s.unresponsive = true;
    const down = await caught(p.run(["version"], { timeoutMs: 300 }));
    expect((down as SshError).reason).toBe("Timeout");
    expect((down as SshError).hostDown).toBe(true);
  });

  test("aborting a command rejects with the signal's reason", async () => {
    const s = await server(() => undefined);
    const controller = new AbortController();
    const running = pool(s).run(["ps:restart", "a1"], { signal: controller.signal });
    setTimeout(() => controller.abort(new Error("shutting down")), 50);
    expect((await caught(running)).message).toBe("shutting down");
  });

  test("binary stdout streams into the sink byte-exact", async () => {
    const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256));
    const s = await server((exec) => {
      exec.stdout(payload);
      exec.exit(0);
    });
    const chunks: Buffer[] = [];
    const sink = new Writable({ highWaterMark: 1024, write: (chunk: Buffer, _e, cb) => (chunks.push(chunk), setImmediate(cb)) });
    const result = await pool(s).run(["storage:exec", "e1", "--", "tar", "-C", "/data", "-czf", "-", "."], { stdout: sink });
    expect(result.stdout).toBe("");
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  /**
   * sshd semantics (issue 17): output several 2 MiB channel windows long on both streams,
   * interleaved, with the exit status sent before the output has drained; the client must keep
   * granting window on both streams and wait for the close, not the exit status.
   */
  test("output many SSH windows long on stdout and stderr arrives whole, on concurrent channels", { timeout: 60_000 }, async () => {
    const line = (stream: string, i: number): string => `${stream} ${String(i).padStart(8, "0")} ${"x".repeat(1000)}\n`;
    const lines = 8_000;
    const s = await server((exec) => {
      for (let i = 0; i < lines; i += 32) {
        exec.stdout(Array.from({ length: 32 }, (_, k) => line("out", i + k)).join(""));
        if (i % 256 === 0) exec.stderr(line("err", i));
      }
      exec.exit(3);
    });
    const expected = Array.from({ length: lines }, (_, i) => line("out", i)).join("");
    const expectedErr = Array.from({ length: lines / 256 + 1 }, (_, i) => line("err", i * 256)).join("");
    const p = pool(s, { defaultTimeoutMs: 30_000 });
    const results = await Promise.all([1, 2, 3].map(() => p.run(["ps:report"])));
    for (const result of results) {
      expect(result.exitCode).toBe(3);
      expect(result.stdout.length).toBe(expected.length);
      expect(result.stdout === expected).toBe(true);
      expect(result.stderr).toBe(expectedErr);
    }
  });

  test("a slow sink holds stdout back without losing stderr or the exit status", { timeout: 60_000 }, async () => {
    const payload = Buffer.from(Array.from({ length: 6 * 2 ** 20 }, (_, i) => (i * 13) % 256));
    const warning = Buffer.from(` !     ${"w".repeat(1000)}\n`.repeat(3_000));
    const s = await server((exec) => {
      for (let at = 0; at < payload.length; at += 2 ** 20) {
        exec.stdout(payload.subarray(at, at + 2 ** 20));
        exec.stderr(warning.subarray((at / 2 ** 20) * 500_000, (at / 2 ** 20 + 1) * 500_000));
      }
      exec.exit(0);
    });
    const chunks: Buffer[] = [];
    const sink = new Writable({ highWaterMark: 64 * 1024, write: (chunk: Buffer, _e, cb) => (chunks.push(chunk), setTimeout(cb, 1)) });
    const result = await pool(s, { defaultTimeoutMs: 30_000 }).run(["storage:exec", "e1", "--", "tar", "-czf", "-", "."], { stdout: sink });
    expect(result.exitCode).toBe(0);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    expect(result.stderr).toBe(warning.subarray(0, 3_000_000).toString());
  });

  test("run resolves only once the sink has taken the last chunk, however slow it is", { timeout: 30_000 }, async () => {
    const payload = Buffer.alloc(48 * 1024, 7);
    const s = await server((exec) => {
      exec.stdout(payload);
      exec.exit(0);
    });
    let taken = 0;
    const sink = new Writable({ highWaterMark: 1 << 20, write: (chunk: Buffer, _e, cb) => void setTimeout(() => ((taken += chunk.length), cb()), 50) });
    const result = await pool(s, { defaultTimeoutMs: 10_000 }).run(["storage:exec", "e1", "--", "tar", "-czf", "-", "."], { stdout: sink });
    expect(result.exitCode).toBe(0);
    expect(taken).toBe(payload.length);
  });

  test("an unreachable host fails as a retryable connection error", async () => {
    const s = await server(echo);
    await s.close();
    const err = await caught(pool(s).run(["version"], { timeoutMs: 5000 }));
    expect(err).toBeInstanceOf(SshError);
    expect((err as SshError).hostDown).toBe(true);
  });
});
