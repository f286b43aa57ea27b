/**
 * The DATA_DIR lock: one owner at a time, any path to the same directory names the same lock, and
 * the kernel releases it when the owner is killed (SIGKILL), with nothing to clean up.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { acquireDataDirLock, DataDirBusyError, type DataDirLock,dataDirOwner } from "../../src/state/data-dir-lock.ts";

let dir: string;
const held: DataDirLock[] = [];
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "mindroom-lock-"));
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill("SIGKILL");
  for (const lock of held.splice(0)) await lock.release();
  await rm(dir, { recursive: true, force: true });
});

/** Another process that takes the lock and holds it until killed; resolves once it holds it. */
async function holdInChild(dataDir: string, abstract: boolean): Promise<ChildProcess> {
  const script = `
    const { acquireDataDirLock } = await import(${JSON.stringify(new URL("../../src/state/data-dir-lock.ts", import.meta.url).href)});
    await acquireDataDirLock(${JSON.stringify(dataDir)}, { abstract: ${abstract} });
    console.log("held");
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (line) => line === "held" && resolve());
    child.once("exit", (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGKILL");
  await exited;
}

for (const abstract of [true, false]) {
  describe(abstract ? "abstract socket (Linux)" : "socket file (other platforms)", () => {
    test("a second owner is refused, naming the first owner's pid", async () => {
      const child = await holdInChild(dir, abstract);
      const refused = await acquireDataDirLock(dir, { abstract }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(DataDirBusyError);
      expect((refused as DataDirBusyError).ownerPid).toBe(child.pid);
      expect((refused as Error).message).toContain(`(pid ${child.pid}) already owns DATA_DIR ${dir}`);
      expect(await dataDirOwner(dir, { abstract })).toEqual({ pid: child.pid });
    });

    test("the lock is free again once its owner is killed with SIGKILL", async () => {
      const child = await holdInChild(dir, abstract);
      await kill(child);
      expect(await dataDirOwner(dir, { abstract })).toBeUndefined();
      const lock = await acquireDataDirLock(dir, { abstract });
      held.push(lock);
      expect(await dataDirOwner(dir, { abstract })).toEqual({ pid: process.pid });
    });

    test("release frees the lock for the next owner", async () => {
      const first = await acquireDataDirLock(dir, { abstract });
      await expect(acquireDataDirLock(dir, { abstract })).rejects.toBeInstanceOf(DataDirBusyError);
      await first.release();
      held.push(await acquireDataDirLock(dir, { abstract }));
    });
  });
}

test("two paths to one directory name the same lock; another directory has its own", async () => {
  const real = join(dir, "real");
  await mkdir(real);
  await symlink(real, join(dir, "link"));
  held.push(await acquireDataDirLock(real));
  await expect(acquireDataDirLock(join(dir, "link"))).rejects.toBeInstanceOf(DataDirBusyError);
  await expect(acquireDataDirLock(`${dir}/./real/`)).rejects.toBeInstanceOf(DataDirBusyError);
  await mkdir(join(dir, "other"));
  held.push(await acquireDataDirLock(join(dir, "other")));
});
