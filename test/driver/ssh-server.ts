/**
 * A minimal SSH server for transport tests of the pool (not a Dokku emulator: that is the
 * sandbox). Each exec calls `handler(command, channel)`; the server counts open sessions per
 * connection and can stop answering (channel opens are then ignored).
 */
import type { AddressInfo } from "node:net";

import { Server, type ServerChannel } from "ssh2";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { channelWriter } from "../../src/drivers/dokku/sandbox/channel-writer.ts";

export interface ExecChannel {
  readonly command: string;
  stdout(data: string | Buffer): void;
  stderr(data: string | Buffer): void;
  /**
   * As sshd: the exit status goes out at once (sshd sends it when the command exits, possibly
   * before the rest of its output), EOF and close only after stdout and stderr are sent.
   */
  exit(code: number): void;
  /** Close without an exit status (a dropped command). */
  drop(): void;
}

export interface TestServer {
  readonly url: string;
  readonly hostKey: string;
  readonly commands: string[];
  peakSessionsPerConnection: number;
  connections: number;
  unresponsive: boolean;
  close(): Promise<void>;
}

/** A client key in OpenSSH format (ssh2 cannot read PKCS#8 ed25519 keys). */
export function clientKey(): string {
  return generateEd25519KeyPair().private;
}

export async function startTestServer(handler: (exec: ExecChannel) => void): Promise<TestServer> {
  const keys = generateEd25519KeyPair();
  const state = { commands: [] as string[], peakSessionsPerConnection: 0, connections: 0, unresponsive: false };
  const clients = new Set<{ end(): void }>();
  const server = new Server({ hostKeys: [keys.private] }, (client) => {
    state.connections += 1;
    clients.add(client);
    client.on("close", () => clients.delete(client));
    let open = 0;
    client.on("authentication", (ctx) => ctx.accept());
    client.on("error", () => undefined);
    client.on("session", (accept) => {
      if (state.unresponsive) return;
      const session = accept();
      open += 1;
      state.peakSessionsPerConnection = Math.max(state.peakSessionsPerConnection, open);
      let closed = false;
      const done = (): void => {
        if (!closed) open -= 1;
        closed = true;
      };
      session.on("close", done);
      session.on("exec", (acceptExec, _reject, info) => {
        const channel: ServerChannel = acceptExec();
        state.commands.push(info.command);
        channel.on("close", done);
        const writer = channelWriter(channel);
        handler({
          command: info.command,
          stdout: writer.stdout,
          stderr: writer.stderr,
          exit: (code) => {
            channel.exit(code);
            void writer.sent().then(() => channel.end());
          },
          drop: () => client.end(),
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(state, {
    url: `ssh://dokku@127.0.0.1:${port}`,
    hostKey: keys.public,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of clients) client.end();
        server.close(() => resolve());
      }),
  });
}
