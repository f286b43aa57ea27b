/**
 * The daemon's Node flags (`--max-semi-space-size`, see README "Memory") are given in three
 * places: `npm start`, the container's entrypoint and the systemd unit. They must agree, and Node
 * must accept them, or one way of running the daemon would quietly use twice the memory.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, test } from "vitest";

import { startNodeFlags } from "../../bench/lib/start-flags.ts";
import { DEPLOY_DIR } from "./references.ts";

describe("the daemon's Node flags", () => {
  const flags = startNodeFlags();

  test("npm start bounds the young generation, and Node accepts the flags", () => {
    expect(flags).toContain("--max-semi-space-size=8");
    // Enough short-lived garbage that V8 grows the young generation as far as it may.
    const churn = "let keep = []; for (let i = 0; i < 3e6; i++) { keep.push({ i, list: [i] }); if (keep.length > 200000) keep = []; }";
    const report = "require('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size";
    const newSpace = (args: string[]): number => Number(execFileSync(process.execPath, [...args, "-p", `${churn}; ${report}`], { encoding: "utf8" }));
    expect(newSpace(flags)).toBeLessThanOrEqual(2 * 8 * 2 ** 20);
    expect(newSpace([])).toBeGreaterThan(2 * 8 * 2 ** 20); // without them V8 takes more: the check can fail
  });

  test("the container's entrypoint passes the same flags", () => {
    const dockerfile = readFileSync(join(DEPLOY_DIR, "Dockerfile"), "utf8");
    const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(dockerfile);
    expect(entrypoint).not.toBeNull();
    expect(JSON.parse(entrypoint![1]!)).toEqual(["node", ...flags, "src/bin.mjs"]);
  });

  test("the systemd unit passes the same flags", () => {
    const unit = readFileSync(join(DEPLOY_DIR, "systemd", "mindroom-reconciler.service"), "utf8");
    expect(unit).toMatch(new RegExp(`^ExecStart=node ${flags.join(" ")} src/bin\\.mjs serve$`, "m"));
  });
});
