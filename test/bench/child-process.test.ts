import { spawn } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

import { describe, expect, it } from "vitest";

const HELPER = fileURLToPath(new URL("../../bench/lib/child-process.ts", import.meta.url));

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function gone(pid: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(50);
  }
  return !alive(pid);
}

/**
 * A parent (node with tsx) spawns a long-lived child without an IPC channel, as the benchmarks
 * spawn the daemon, prints its pid, then ends on an error it does not catch.
 */
function parentScript(register: boolean): string {
  return [
    `import { spawn } from "node:child_process";`,
    `import { endsWithThisProcess } from ${JSON.stringify(HELPER)};`,
    `const child = spawn(process.execPath, ["-e", "setTimeout(() => {}, 60000)"], { stdio: "ignore" });`,
    register ? "endsWithThisProcess(child);" : "",
    `process.stdout.write(String(child.pid) + "\\n");`,
    `setTimeout(() => { throw new Error("the benchmark failed"); }, 200);`,
  ].join("\n");
}

async function childOfFailedParent(register: boolean): Promise<number> {
  const parent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", parentScript(register)], { stdio: ["ignore", "pipe", "ignore"] });
  const pid = Number(String((await once(parent.stdout, "data"))[0]).trim());
  await once(parent, "exit");
  return pid;
}

describe("endsWithThisProcess (bench/lib/child-process.ts)", () => {
  it("kills a spawned daemon when the benchmark exits on an uncaught error", async () => {
    const pid = await childOfFailedParent(true);
    expect(pid).toBeGreaterThan(0);
    expect(await gone(pid, 5_000)).toBe(true);
  });

  it("is what ends it: without it the child outlives its parent", async () => {
    const pid = await childOfFailedParent(false);
    try {
      expect(await gone(pid, 500)).toBe(false);
    } finally {
      if (alive(pid)) process.kill(pid, "SIGKILL");
    }
  });
});
