/**
 * The processes of an embedded Postgres that `serve` owns, found from its data directory, for
 * tests and the chaos soak that freeze (SIGSTOP) or kill them.
 */
import { execFileSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** The postmaster's pid from `<dataDir>/pg/postmaster.pid`, or undefined while there is none. */
export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(join(dataDir, "pg", "postmaster.pid"), "utf8")).split("\n")[0]);
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The postmaster first, then every process it forked; empty without a postmaster. */
export async function postgresPids(dataDir: string): Promise<number[]> {
  const postmaster = await postmasterPid(dataDir);
  if (postmaster === undefined) return [];
  let children: number[] = [];
  try {
    children = execFileSync("ps", ["-o", "pid=", "--ppid", String(postmaster)], { encoding: "utf8" })
      .split("\n")
      .map((line) => Number(line.trim()))
      .filter((pid) => pid > 0);
  } catch {
    // ps exits 1 when there are no children.
  }
  return [postmaster, ...children];
}

/** Sends `name` to `pid`; false when the process is already gone. */
export function signalPid(pid: number, name: NodeJS.Signals): boolean {
  try {
    process.kill(pid, name);
    return true;
  } catch {
    return false;
  }
}
