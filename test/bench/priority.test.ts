import { spawn } from "node:child_process";
import { once } from "node:events";
import { getPriority } from "node:os";

import { describe, expect, it } from "vitest";

import { lowerDescendants } from "../../bench/lib/priority.ts";

describe("lowerDescendants (bench/lib/priority.ts)", () => {
  it("moves every thread of the processes started so far down, and not this process", async () => {
    const own = getPriority();
    // A child with a grandchild, so the walk has to go below the first level.
    const script = "const g = require('node:child_process').spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], { stdio: 'ignore' }); process.stdout.write(String(g.pid)); setTimeout(() => {}, 30000)";
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let grandchild = 0;
    try {
      grandchild = Number(String((await once(child.stdout, "data"))[0]));
      const grandchildBefore = getPriority(grandchild);
      const before = getPriority(child.pid!);
      const moved = lowerDescendants(3);
      if (process.platform !== "linux") {
        expect(moved).toBe(0);
        return;
      }
      // Node runs several threads per process: each of both processes' threads was moved.
      expect(moved).toBeGreaterThan(2);
      expect(getPriority(child.pid!)).toBe(Math.min(19, before + 3));
      expect(getPriority(grandchild)).toBe(Math.min(19, grandchildBefore + 3));
      expect(getPriority()).toBe(own);
    } finally {
      if (grandchild > 0) process.kill(grandchild, "SIGKILL");
      child.kill("SIGKILL");
    }
  });
});
