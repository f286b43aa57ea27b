import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";

import type ssh2 from "ssh2";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { clientKey, connect, exec } from "./ssh-helpers.ts";

/** Names of the entries in an uncompressed tar (ustar headers). */
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const name = tar.subarray(off, off + 100).toString().replace(/\0.*$/s, "");
    if (name === "") break;
    names.push(name);
    const size = parseInt(tar.subarray(off + 124, off + 136).toString().replace(/\0.*$/s, "").trim() || "0", 8);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

/** GET through the ingress with a Host header (fetch may not override Host). */
function viaHost(base: string, path: string, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end();
  });
}

const b64 = (s: string): string => Buffer.from(s).toString("base64");

for (const version of ["0.30", "0.34", "0.38"] as const) {
  describe(`dokku ${version} over SSH`, () => {
    let sb: Sandbox;
    let c: ssh2.Client;
    beforeAll(async () => {
      sb = await startSandbox({ dokkuVersion: version, authorizedKeys: [clientKey.public] });
      c = await connect(sb.port);
    });
    afterAll(async () => {
      c.end();
      await sb.close();
    });

    test("version and missing app", async () => {
      expect((await exec(c, "version")).out).toBe(`dokku version ${sb.version}\n`);
      const r = await exec(c, "apps:exists nosuch");
      expect(r).toMatchObject({ code: 20, out: "", err: " !     App nosuch does not exist\n" });
    });

    test("create: bad name, success, duplicate, quiet list", async () => {
      const bad = await exec(c, "apps:create Bad_Name");
      expect(bad.code).toBe(1);
      expect(bad.err).toBe(
        " !     App name must begin with lowercase alphanumeric character, and may only contain lowercase alphanumerics, dots, and hyphens\n",
      );
      const ok = await exec(c, "apps:create t1-backend");
      expect(ok).toMatchObject({ code: 0, out: "-----> Creating t1-backend...\n-----> Creating new app virtual host file...\n" });
      expect(await exec(c, "apps:create t1-backend")).toMatchObject({ code: 1, err: " !     Name is already taken\n" });
      expect(await exec(c, "--quiet apps:list")).toMatchObject({ code: 0, out: "t1-backend\n" });
      const json = await exec(c, "apps:list --format json");
      if (version === "0.38") expect(json).toMatchObject({ code: 0, out: '["t1-backend"]\n' });
      else expect(json.code).toBe(2);
    });

    test("deploy, same image is 'No changes detected' exit 1, start when running is 0, real HTTP", async () => {
      const first = await exec(c, "git:from-image t1-backend nginx:1.27");
      expect(first.code).toBe(0);
      expect(first.out).toContain("=====> Application deployed:");
      const again = await exec(c, "git:from-image t1-backend nginx:1.27");
      expect(again.code).toBe(1);
      // 0.38+ build capture puts the warning on stdout
      expect(version === "0.38" ? again.out : again.err).toContain(" !     No changes detected, skipping git commit\n");
      const start = await exec(c, "ps:start t1-backend");
      expect(start.code).toBe(0);
      expect(version === "0.38" ? start.out : start.err).toBe(" !     App t1-backend already running\n");
      const res = await fetch(`${sb.endpoint("t1-backend")}/api/health`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: "ok" });
      expect(await viaHost(sb.ingressUrl, "/api/health", "t1-backend.sandbox.localhost")).toBe(200);
      const ps = await exec(c, "ps:report t1-backend --running");
      expect(ps).toMatchObject({ code: 0, out: "true\n" });
    });

    test("ps:report layout per version", async () => {
      const r = await exec(c, "ps:report t1-backend");
      const lines = r.out.split("\n");
      expect(lines[0]).toBe("=====> t1-backend ps information");
      const width = version === "0.38" ? 34 : 31;
      expect(lines[1]).toBe(`       ${"Deployed:".padEnd(width)}true`);
      const json = JSON.parse((await exec(c, "ps:report t1-backend --format json")).out) as Record<string, string>;
      expect(json["running"]).toBe("true");
      expect("can-scale" in json).toBe(version === "0.38");
    });

    test("stop, crash and unhealthy change real HTTP", async () => {
      await exec(c, "ps:stop t1-backend");
      expect(sb.endpoint("t1-backend")).toBeUndefined();
      expect(await viaHost(sb.ingressUrl, "/api/health", "t1-backend.sandbox.localhost")).toBe(502);
      const rep = await exec(c, "ps:report t1-backend");
      expect(rep.out).toMatch(/Restore: +false\n/);
      const started = await exec(c, "ps:start t1-backend");
      expect(started.code).toBe(0);
      sb.control.setUnhealthy("t1-backend", true);
      expect((await fetch(`${sb.endpoint("t1-backend")}/api/health`)).status).toBe(503);
      sb.control.setUnhealthy("t1-backend", false);
      const endpoint = sb.endpoint("t1-backend") as string;
      await sb.control.crashApp("t1-backend");
      await expect(fetch(`${endpoint}/api/health`)).rejects.toThrow();
      const crashed = await exec(c, "ps:report t1-backend");
      expect(crashed.out).toMatch(/Running: +false\n/);
      expect(crashed.out).toMatch(/Restore: +true\n/);
      expect(await viaHost(sb.ingressUrl, "/", "unknown.example")).toBe(404);
    });

    test("config:set --encoded with hostile values arrives byte-exact", async () => {
      const hostile = `it's "q" $(id) \`id\` \\n\n tab\t é 😀 <&>`;
      const set = await exec(c, `--quiet config:set --encoded --no-restart t1-backend K=${b64(hostile)} E=`);
      expect(set).toMatchObject({ code: 0, out: "", err: "" });
      expect((await exec(c, "config:get t1-backend K")).out).toBe(`${hostile}\n`);
      expect(sb.control.app("t1-backend")?.config["K"]).toBe(hostile);
      expect(await exec(c, "config:get t1-backend MISSING")).toMatchObject({ code: 1, out: "", err: "" });
      const json = await exec(c, "config:export --format json t1-backend");
      expect(JSON.parse(json.out)).toEqual({ E: "", K: hostile });
      expect(json.out).toContain("\\u003c\\u0026\\u003e");
      const bad = await exec(c, "config:set --encoded t1-backend K=%%%");
      expect(bad).toMatchObject({ code: 1, err: " !     illegal base64 data at input byte 0 for key 'K'\n" });
    });

    test("storage: mount twice fails, list and report", async () => {
      expect((await exec(c, "storage:ensure-directory t1-data")).code).toBe(0);
      const spec = "/var/lib/dokku/data/storage/t1-data:/app/storage";
      expect(await exec(c, `storage:mount t1-backend ${spec}`)).toMatchObject({ code: 0, out: "", err: "" });
      expect(await exec(c, `storage:mount t1-backend ${spec}`)).toMatchObject({ code: 1, err: " !     Mount path already exists.\n" });
      const list = await exec(c, "storage:list t1-backend");
      expect(list.out).toContain(spec);
    });

    test("backup stream is a real tar.gz of the storage directory", async () => {
      const dir = sb.control.storageDir("t1-data");
      mkdirSync(join(dir, "sub"), { recursive: true });
      writeFileSync(join(dir, "a.txt"), "hello");
      writeFileSync(join(dir, "sub", "b.bin"), Buffer.from([0, 1, 2, 255]));
      const cmd = version === "0.38" ? "storage:exec t1-data -- tar -C /data -czf - ." : "run t1-backend tar -C /app/storage -czf - .";
      const r = await exec(c, cmd);
      expect(r.code).toBe(0);
      expect(r.stdout.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      const names = tarNames(gunzipSync(r.stdout));
      expect(names).toEqual(expect.arrayContaining(["./a.txt", "./sub/b.bin"]));
    });

    test("destroy needs confirmation; --force works after the app name", async () => {
      const noForce = await exec(c, "apps:destroy t1-backend");
      expect(noForce.code).toBe(1);
      expect(noForce.err).toContain(' !     To proceed, type "t1-backend"\n');
      const forced = await exec(c, "apps:destroy t1-backend --force");
      expect(forced.code).toBe(0);
      expect(forced.out).toContain("-----> Destroying t1-backend (including all add-ons)\n");
      expect(await exec(c, "apps:exists t1-backend")).toMatchObject({ code: 20 });
      expect(sb.control.app("t1-backend")).toBeUndefined();
    });

    test("unknown commands and subsystems", async () => {
      const r = await exec(c, "letsencrypt:nope foo");
      expect(r).toMatchObject({
        code: 1,
        err: " !     `letsencrypt:nope foo` is not a dokku command.\n !     See `dokku help` for a list of available commands.\n",
      });
    });
  });
}

describe("version-specific splitting over SSH", () => {
  test("0.34+ strips quotes for config:set, 0.30 does too (config* via xargs), domains differ", async () => {
    const sb30 = await startSandbox({ dokkuVersion: "0.30" });
    const sb38 = await startSandbox({ dokkuVersion: "0.38" });
    try {
      for (const sb of [sb30, sb38]) {
        const c = await connect(sb.port);
        await exec(c, "apps:create q");
        await exec(c, "config:set --no-restart q A='hello world'");
        expect((await exec(c, "config:get q A")).out).toBe("hello world\n");
        const d = await exec(c, "domains:add q 'x.example.com'");
        if (sb === sb38) expect(d.code).toBe(0);
        else expect(d).toMatchObject({ code: 1, err: " !     'x.example.com' is invalid. exiting...\n" });
        const unmatched = await exec(c, `config:set --no-restart q B=1 "C=say \\"hi\\""`);
        if (sb === sb38) {
          expect(unmatched.err).toContain("xargs: unmatched double quote");
          expect((await exec(c, "config:get q B")).out).toBe("1\n");
        }
        c.end();
      }
    } finally {
      await sb30.close();
      await sb38.close();
    }
  });
});

describe("auth, faults and persistence", () => {
  test("a key not in authorized_keys is refused", async () => {
    const sb = await startSandbox({ authorizedKeys: [clientKey.public] });
    try {
      const other = generateEd25519KeyPair();
      await expect(connect(sb.port, { privateKey: other.private })).rejects.toThrow(/authentication methods failed/);
    } finally {
      await sb.close();
    }
  });

  test("latency, drop mid-command, deploy lock, failure rate, command log", async () => {
    const sb = await startSandbox({ seed: 7 });
    const c = await connect(sb.port);
    try {
      await exec(c, "apps:create f1");
      sb.control.resetCounters();
      sb.control.setLatency(30);
      const t0 = Date.now();
      await exec(c, "apps:exists f1");
      expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
      sb.control.setLatency(null);

      sb.control.dropNext({ match: "config:set", applyEffect: true });
      const dropped = await exec(c, "config:set --no-restart f1 X=1");
      expect(dropped.code).toBeNull();
      expect(sb.control.app("f1")?.config["X"]).toBe("1");
      sb.control.dropNext({ match: "config:set" });
      expect((await exec(c, "config:set --no-restart f1 Y=1")).code).toBeNull();
      expect(sb.control.app("f1")?.config["Y"]).toBeUndefined();

      const release = sb.control.holdDeployLock("f1");
      const locked = await exec(c, "git:from-image f1 nginx:1");
      expect(locked.code).toBe(1);
      expect(locked.out).toContain(" !     f1 currently has a deploy lock in place. Exiting...\n");
      release();
      expect((await exec(c, "git:from-image f1 nginx:1")).code).toBe(0);

      sb.control.setFailureRate(1, { mode: "drop", match: "apps:list" });
      expect((await exec(c, "apps:list")).code).toBeNull();
      sb.control.setFailureRate(0);
      expect((await exec(c, "apps:list")).code).toBe(0);

      expect(sb.control.commandCount).toBe(sb.control.commands.length);
      expect(sb.control.commands.map((r) => r.exitCode)).toContain(null);
      expect(sb.control.commands[0]).toEqual({ argv: ["apps:exists", "f1"], exitCode: 0 });
    } finally {
      c.end();
      await sb.close();
    }
  });

  test("an unresponsive host times the client out, then answers again", async () => {
    const sb = await startSandbox();
    try {
      sb.control.setUnresponsive(true);
      await expect(connect(sb.port, { readyTimeout: 500 })).rejects.toThrow(/Timed out while waiting for handshake/);
      sb.control.setUnresponsive(false);
      const c = await connect(sb.port);
      expect((await exec(c, "version")).code).toBe(0);
      c.end();
    } finally {
      await sb.close();
    }
  });

  test("state and host key survive a restart with the same stateDir; seeded apps", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sandbox-state-"));
    try {
      const a = await startSandbox({ stateDir: dir });
      const names = await a.control.seedApps(50, { running: true, serveHttp: false });
      expect(names).toHaveLength(50);
      const c = await connect(a.port);
      await exec(c, "apps:create keep-frontend");
      await exec(c, "git:from-image keep-frontend img:1");
      c.end();
      const key = a.hostKey;
      await a.close();
      const b = await startSandbox({ stateDir: dir });
      try {
        expect(b.hostKey).toBe(key);
        expect(b.control.apps()).toContain("keep-frontend");
        expect(b.control.apps()).toHaveLength(51);
        const res = await fetch(`${b.endpoint("keep-frontend")}/`);
        expect(res.status).toBe(200);
        expect(await viaHost(b.ingressUrl, "/", "seed-0.sandbox.localhost")).toBe(200);
        const c2 = await connect(b.port);
        const ps = await exec(c2, "ps:report");
        expect(ps.out.match(/ps information/g)).toHaveLength(51);
        c2.end();
      } finally {
        await b.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("state.json (every app's env) is readable by its owner only, also when an older file was 0644", async () => {
    const dir = mkdtempSync(join(tmpdir(), "sandbox-state-"));
    try {
      // A file (and a stale tmp file) written world-readable by an earlier version.
      writeFileSync(join(dir, "state.json"), JSON.stringify({ apps: [], storageEntries: [] }), { mode: 0o644 });
      writeFileSync(join(dir, "state.json.tmp"), "{}", { mode: 0o644 });
      const sb = await startSandbox({ stateDir: dir });
      try {
        const c = await connect(sb.port);
        await exec(c, "apps:create secret-frontend");
        await exec(c, "config:set --no-restart secret-frontend ADMIN_TOKEN=s3cr3t");
        c.end();
        expect(statSync(join(dir, "state.json")).mode & 0o777).toBe(0o600);
      } finally {
        await sb.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("serveHttp: false: deployed apps run and report running, with no listener of their own; the ingress answers", async () => {
    const sb = await startSandbox({ authorizedKeys: [clientKey.public], serveHttp: false });
    const c = await connect(sb.port);
    try {
      expect((await exec(c, "apps:create quiet-backend")).code).toBe(0);
      expect((await exec(c, "git:from-image quiet-backend nginx:1.27")).code).toBe(0);
      expect(await exec(c, "ps:report quiet-backend --running")).toMatchObject({ code: 0, out: "true\n" });
      expect(sb.endpoint("quiet-backend")).toBeUndefined();
      expect(await viaHost(sb.ingressUrl, "/api/health", "quiet-backend.sandbox.localhost")).toBe(200);
    } finally {
      c.end();
      await sb.close();
    }
  });

  test("OpenSSH client: apps:exists nosuch exits 20", async () => {
    const sb = await startSandbox();
    const dir = mkdtempSync(join(tmpdir(), "sandbox-ssh-"));
    try {
      const keyFile = join(dir, "id");
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", keyFile]);
      const args = ["-p", String(sb.port), "-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "dokku@127.0.0.1", "apps:exists", "nosuch"];
      // async spawn: the sandbox runs in this process, a sync spawn would block it
      const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const p = spawn("ssh", args, { stdio: ["ignore", "pipe", "pipe"] });
        let stderr = "";
        p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        p.on("close", (status) => resolve({ status, stderr }));
      });
      expect(r.status).toBe(20);
      expect(r.stderr).toContain(" !     App nosuch does not exist");
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await sb.close();
    }
  });
});
