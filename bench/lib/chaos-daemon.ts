/**
 * The daemon under chaos: `mindroom-reconciler serve` as a child process on its embedded
 * Postgres in DATA_DIR, restarted like systemd would (`Restart=always`) whenever it exits, and the
 * process-level faults: SIGKILL of the daemon, SIGSTOP/SIGCONT of every Postgres process, SIGKILL
 * of the postmaster. Its output goes to DATA_DIR/serve.log.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { postgresPids, postmasterPid, signalPid } from "../../test/helpers/postgres-processes.ts";
import { endsWithThisProcess } from "./child-process.ts";
import { startNodeFlags } from "./start-flags.ts";

const RESTART_DELAY_MS = 1_000;

export interface ChaosDaemon {
  /** The HTTP port of the current process (changes on each restart). */
  port(): Promise<number>;
  /** Exits the bench did not cause (exit status 1 past the Postgres restart budget, crashes). */
  readonly unexpectedExits: { code: number | null; signal: string | null }[];
  kill(): void;
  freezeDatabase(): Promise<number[]>;
  thaw(pids: readonly number[]): void;
  killPostmaster(): Promise<boolean>;
  stop(): Promise<void>;
}

export function startChaosDaemon(dataDir: string, env: Record<string, string>): ChaosDaemon {
  const log = createWriteStream(join(dataDir, "serve.log"), { flags: "a" });
  const unexpectedExits: { code: number | null; signal: string | null }[] = [];
  let stopping = false;
  let killedByUs = false;
  let current = spawnServe(env, log);
  const watch = (): void => {
    void current.exited.then(({ code, signal }) => {
      if (stopping) return;
      if (!killedByUs) unexpectedExits.push({ code, signal });
      killedByUs = false;
      setTimeout(() => {
        if (stopping) return;
        current = spawnServe(env, log);
        watch();
      }, RESTART_DELAY_MS);
    });
  };
  watch();
  return {
    port: () => current.port,
    unexpectedExits,
    kill: () => {
      killedByUs = true;
      current.child.kill("SIGKILL");
    },
    freezeDatabase: async () => {
      const pids = await postgresPids(dataDir);
      for (const pid of pids) signalPid(pid, "SIGSTOP");
      return pids;
    },
    thaw: (pids) => {
      for (const pid of pids.slice().reverse()) signalPid(pid, "SIGCONT");
    },
    killPostmaster: async () => {
      const pid = await postmasterPid(dataDir);
      return pid !== undefined && signalPid(pid, "SIGKILL");
    },
    stop: async () => {
      stopping = true;
      current.child.kill("SIGTERM");
      const timer = setTimeout(() => current.child.kill("SIGKILL"), 30_000);
      await current.exited;
      clearTimeout(timer);
      log.end();
    },
  };
}

interface ServeChild {
  readonly child: ChildProcess;
  readonly port: Promise<number>;
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
}

function spawnServe(env: Record<string, string>, log: WriteStream): ServeChild {
  const child = spawn(process.execPath, [...startNodeFlags(), "src/bin.mjs", "serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
  endsWithThisProcess(child);
  let resolvePort: (port: number) => void = () => {};
  const port = new Promise<number>((resolve) => (resolvePort = resolve));
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      log.write(`${line}\n`);
      const match = /listening on http:\/\/[0-9.:[\]]+:(\d+) /.exec(line);
      if (match) resolvePort(Number(match[1]));
    });
  }
  const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on("exit", (code, sig) => resolve({ code, signal: sig })));
  return { child, port, exited };
}

