/**
 * `npm run build` (src/build.mjs) compiles src/ to dist/ and stamps it; src/bin.mjs runs that build
 * while no source file is newer than the stamp, and the sources through tsx once one is (a build
 * older than an edit must never run). Exercised on a copy of the installation, built for real.
 */
import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
let install: string;
let build: ReturnType<typeof spawnSync>;

beforeAll(async () => {
  install = await mkdtemp(join(tmpdir(), "mindroom-build-"));
  for (const part of ["src", "migrations"]) await cp(join(ROOT, part), join(install, part), { recursive: true });
  for (const file of ["package.json", "tsconfig.json", "tsconfig.build.json"]) await cp(join(ROOT, file), join(install, file));
  await mkdir(join(install, "node_modules"));
  for (const entry of await readdir(join(ROOT, "node_modules"))) await symlink(join(ROOT, "node_modules", entry), join(install, "node_modules", entry));
  build = spawnSync(process.execPath, [join(install, "src", "build.mjs")], { encoding: "utf8", timeout: 240_000 });
}, 250_000);

afterAll(async () => {
  await rm(install, { recursive: true, force: true });
});

const help = (): ReturnType<typeof spawnSync> =>
  spawnSync(process.execPath, [join(install, "src", "bin.mjs"), "--help"], { env: { PATH: process.env.PATH }, encoding: "utf8", timeout: 60_000 });

describe("the build in dist/", () => {
  test("npm run build compiles every source module and stamps the build", async () => {
    expect(build.status, String(build.stderr)).toBe(0);
    expect(await readFile(join(install, "dist", ".build-stamp"), "utf8")).toMatch(/^\d{4}-/);
    expect((await readdir(join(install, "dist", "sources", "stripe"))).filter((f) => f.endsWith(".js"))).toContain("inbox-thread-main.js");
  });

  test("bin.mjs runs the build while it is current, the sources once one is newer", async () => {
    const cli = join(install, "src", "cli.ts");
    // A source that cannot compile: only a run from dist/ can still print the usage.
    await writeFile(cli, "export const broken: = ;\n");
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(cli, anHourAgo, anHourAgo);
    const fromBuild = help();
    expect(fromBuild.status, String(fromBuild.stderr)).toBe(0);
    expect(fromBuild.stdout).toMatch(/^usage: mindroom-reconciler <command>/);

    const now = new Date();
    await utimes(cli, now, now);
    const fromSources = help();
    expect(fromSources.status).not.toBe(0);
    expect(fromSources.stderr).toMatch(/cli\.ts/);
  });
});
