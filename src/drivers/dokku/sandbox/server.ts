/**
 * The SSH side: user `dokku`, public-key auth only (signatures verified), no pty, subsystems and
 * shells answered like the forced command would, and every exec run through `execute` with the
 * fault knobs applied. Sockets come from our own TCP server so a "host that stops answering"
 * can hold them before any SSH byte is sent.
 */
import { createServer, type Server as NetServer, type Socket } from "node:net";
import type { Readable } from "node:stream";

import type { AuthContext, Connection, ServerChannel } from "ssh2";
import ssh2 from "ssh2";

import { channelWriter } from "./channel-writer.ts";
import type { Host } from "./context.ts";
import { execute } from "./dispatch.ts";
import type { Faults } from "./faults.ts";
import type { Sink } from "./io.ts";
import { resolveCommand } from "./split.ts";

type ParsedKey = ReturnType<typeof ssh2.utils.parseKey>;

export interface CommandRecord {
  argv: string[];
  /** null when the client got no exit status (dropped). */
  exitCode: number | null;
}

export interface SshOptions {
  host: Host;
  version: string;
  hostKeyPem: string;
  /** Parsed authorized keys; undefined accepts any correctly signed key. */
  authorized: ParsedKey[] | undefined;
  faults: Faults;
  record(r: CommandRecord): void;
}

function singleKey(k: ParsedKey): Exclude<ParsedKey, Error | unknown[]> | undefined {
  if (k instanceof Error) return undefined;
  return Array.isArray(k) ? (k[0] as Exclude<ParsedKey, Error | unknown[]>) : (k as Exclude<ParsedKey, Error | unknown[]>);
}

function authenticate(ctx: AuthContext, authorized: ParsedKey[] | undefined): void {
  if (ctx.username !== "dokku" || ctx.method !== "publickey") return ctx.reject(["publickey"]);
  const offered = singleKey(ssh2.utils.parseKey(ctx.key.data));
  if (offered === undefined) return ctx.reject(["publickey"]);
  const allowed =
    authorized === undefined
      ? offered
      : authorized.map(singleKey).find((k) => k !== undefined && k.type === ctx.key.algo && k.getPublicSSH().equals(ctx.key.data));
  if (allowed === undefined) return ctx.reject(["publickey"]);
  // Without a signature this is the "would you accept this key" probe.
  if (ctx.signature === undefined) return ctx.accept();
  if (allowed.verify(ctx.blob as Buffer, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(["publickey"]);
  ctx.accept();
}

/** Chunks gathered before a write, so a report of many lines is a few SSH packets, as from sshd. */
const FLUSH_BYTES = 32 * 1024;

/** The output side of one exec: `flush` writes what is gathered, `sent` settles once it is on the wire. */
type ChannelSink = Sink & { flush(): void; sent(): Promise<void> };

/**
 * A sink that coalesces each stream's chunks and writes them on the next turn of the event loop
 * (or once 32 KiB gathered, or on `flush`). Writing every line as its own SSH packet made a bulk
 * `ps:report` of 1,000 apps cost most of a CPU second in encryption.
 *
 * Output beyond the client's SSH window waits until the client grants more; `sent()` settles when
 * it is all on its way (channel-writer.ts). The exit status used to wait for the channel's
 * `drain` event instead, which only fires after a write that returned false: output between one
 * window (2 MiB) and a window plus the stream's buffer (4 MiB) never got it, so the exit status
 * was never sent and both ends sat idle until the client's timeout (issue 17).
 */
function channelSink(ch: ServerChannel): ChannelSink {
  const writer = channelWriter(ch);
  const pending = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  let size = 0;
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    size = 0;
    const out = Buffer.concat(pending.stdout.splice(0));
    const err = Buffer.concat(pending.stderr.splice(0));
    if (out.length > 0) writer.stdout(out);
    if (err.length > 0) writer.stderr(err);
  };
  const push = (stream: "stdout" | "stderr", chunk: string | Buffer): void => {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    pending[stream].push(buffer);
    size += buffer.length;
    if (size >= FLUSH_BYTES) return flush();
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  return { stdout: (c) => push("stdout", c), stderr: (c) => push("stderr", c), flush, sent: writer.sent };
}

const NULL_SINK: ChannelSink = { stdout: () => undefined, stderr: () => undefined, flush: () => undefined, sent: () => Promise.resolve() };

export class SshFrontend {
  private readonly ssh: ssh2.Server;
  private readonly tcp: NetServer;
  private readonly held = new Set<Socket>();
  private readonly sockets = new Set<Socket>();
  private readonly conns = new Set<Connection>();

  constructor(private readonly o: SshOptions) {
    this.ssh = new ssh2.Server({ hostKeys: [o.hostKeyPem], ident: "OpenSSH_9.6p1 Ubuntu-3ubuntu13" }, (c) => this.onClient(c));
    this.tcp = createServer((s) => this.onSocket(s));
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.tcp.once("error", reject);
      this.tcp.listen(port, host, () => {
        const addr = this.tcp.address();
        resolve(typeof addr === "object" && addr !== null ? addr.port : port);
      });
    });
  }

  private onSocket(s: Socket): void {
    this.sockets.add(s);
    s.on("close", () => {
      this.sockets.delete(s);
      this.held.delete(s);
    });
    s.on("error", () => undefined);
    s.setNoDelay(true);
    if (!this.o.faults.unresponsive) return this.ssh.injectSocket(s);
    // Accept TCP, say nothing: the client's handshake times out. Released when cleared.
    this.held.add(s);
    void this.o.faults.waitResponsive().then(() => {
      if (this.held.delete(s) && !s.destroyed) this.ssh.injectSocket(s);
    });
  }

  private onClient(client: Connection): void {
    this.conns.add(client);
    client.on("close", () => this.conns.delete(client));
    client.on("error", () => undefined);
    client.on("authentication", (ctx) => authenticate(ctx, this.o.authorized));
    client.on("ready", () => {
      client.on("session", (accept) => {
        const session = accept();
        session.on("pty", (_a, reject) => reject?.());
        session.on("env", (accept) => accept?.());
        session.on("exec", (acc, _rej, info) => this.onExec(client, acc(), info.command));
        session.on("shell", (acc) => this.onExec(client, acc(), ""));
        // sshd runs the forced command for subsystems too: `dokku /usr/lib/openssh/sftp-server`.
        session.on("subsystem", (acc, _rej, info) => this.onExec(client, acc(), `/usr/lib/openssh/${info.name}-server`));
      });
    });
  }

  private async onExec(client: Connection, ch: ServerChannel, raw: string): Promise<void> {
    ch.on("error", () => undefined);
    const { faults } = this.o;
    await faults.waitResponsive();
    const argv = resolveCommand(raw, this.o.version).argv;
    const finish = (exitCode: number | null, drop?: "channel" | "connection"): void => {
      this.o.record({ argv, exitCode });
      if (drop === "connection") return void client.end();
      if (drop === "channel") return void ch.close();
      if (ch.destroyed || !ch.writable) return;
      // Exit status once stdout and stderr are sent; `end` then sends EOF and close, as sshd does.
      ch.exit(exitCode ?? 1);
      ch.end();
    };
    const failure = faults.rollFailure(argv);
    if (failure === "drop") return finish(null, "channel");
    if (failure === "lock") {
      const app = argv[1] ?? "app";
      ch.stderr.write(` !     ${app} currently has a deploy lock in place. Exiting...\n !     Run 'apps:unlock' to release the existing deploy lock\n`);
      return finish(1);
    }
    const drop = faults.takeDrop(argv);
    if (drop !== undefined && drop.applyEffect !== true) {
      await faults.applyLatency(argv[0] ?? "");
      return finish(null, drop.scope ?? "channel");
    }
    const sink = drop === undefined ? channelSink(ch) : NULL_SINK;
    const result = await execute({
      host: this.o.host,
      version: this.o.version,
      raw,
      sink,
      stdin: ch as Readable,
      work: (a) => faults.applyLatency(a[0] ?? ""),
    });
    // A host that stopped answering while the command ran: its effect happened, the rest of its
    // output and its exit status wait with everything else until the host answers again.
    await faults.waitResponsive();
    sink.flush();
    await sink.sent();
    if (drop !== undefined) return finish(null, drop.scope ?? "channel");
    finish(result.exitCode);
  }

  async close(): Promise<void> {
    for (const c of this.conns) c.end();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.tcp.close(() => r()));
  }
}
