/** A raw ssh2 client for the sandbox tests: exec returns bytes, stderr and the exit code. */
import ssh2 from "ssh2";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";

export const clientKey = generateEd25519KeyPair();

export interface ExecResult {
  stdout: Buffer;
  out: string;
  err: string;
  /** null: the channel closed without an exit status. */
  code: number | null;
}

export function connect(port: number, opts: { privateKey?: string; readyTimeout?: number } = {}): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.on("ready", () => resolve(c));
    c.on("error", reject);
    c.connect({
      host: "127.0.0.1",
      port,
      username: "dokku",
      privateKey: opts.privateKey ?? clientKey.private,
      readyTimeout: opts.readyTimeout ?? 20_000,
    });
  });
}

export function exec(c: ssh2.Client, command: string, stdin?: Buffer | string): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    c.exec(command, (err, ch) => {
      if (err) return reject(err);
      const out: Buffer[] = [];
      const errs: Buffer[] = [];
      let code: number | null = null;
      ch.on("data", (b: Buffer) => out.push(b));
      ch.stderr.on("data", (b: Buffer) => errs.push(b));
      ch.on("exit", (c2: number | null) => (code = c2));
      ch.on("close", () => {
        const stdout = Buffer.concat(out);
        resolve({ stdout, out: stdout.toString(), err: Buffer.concat(errs).toString(), code });
      });
      if (stdin !== undefined) ch.end(stdin);
      else ch.end();
    });
  });
}
