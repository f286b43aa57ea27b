import { describe, expect, test } from "vitest";

import {
  actionCommands,
  backupCommand,
  configSetCommands,
  MAX_COMMAND_BYTES,
  renderCommand,
} from "../../src/drivers/dokku/commands.ts";
import { parseVersion } from "../../src/drivers/dokku/version.ts";
import { TerminalError } from "../../src/errors.ts";

const V038 = parseVersion("dokku version 0.38.27");
const V0380 = parseVersion("dokku version 0.38.0");
const V030 = parseVersion("dokku version 0.30.6");
const storage = { entry: "acme-backend-data", mountPath: "/app/storage" };

function decodePairs(line: string): Record<string, string> {
  const pairs = line.split(" ").slice(5);
  return Object.fromEntries(pairs.map((pair) => {
    const eq = pair.indexOf("=");
    return [pair.slice(0, eq), Buffer.from(pair.slice(eq + 1), "base64").toString("utf8")];
  }));
}

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof TerminalError ? err.reason : `not terminal: ${String(err)}`;
  }
  return undefined;
}

describe("actionCommands", () => {
  const cases: Record<string, { reason: string; action: Parameters<typeof actionCommands>[0]; version?: typeof V038; want: string[] }> = {
    createApp: { reason: "apps:create takes the validated name", action: { kind: "createApp", app: "acme-backend" }, want: ["apps:create acme-backend"] },
    ensureStorage: {
      reason: "directory first, then a colon mount of the storage root path",
      action: { kind: "ensureStorage", app: "acme-backend", storage },
      want: ["storage:ensure-directory acme-backend-data", "storage:mount acme-backend /var/lib/dokku/data/storage/acme-backend-data:/app/storage"],
    },
    setResources: {
      reason: "memory in MB with unit, cpu as a decimal",
      action: { kind: "setResources", app: "a1", resources: { memoryMb: 512, cpus: 0.5 } },
      want: ["resource:limit --memory 512m --cpu 0.5 a1"],
    },
    setDomains: { reason: "domains:set replaces the list", action: { kind: "setDomains", app: "a1", domains: ["a.example.com", "b.example.com"] }, want: ["domains:set a1 a.example.com b.example.com"] },
    clearDomains: { reason: "an empty list clears", action: { kind: "setDomains", app: "a1", domains: [] }, want: ["domains:clear a1"] },
    deployImage: {
      reason: "git:* arguments go unquoted (quotes would arrive literally)",
      action: { kind: "deployImage", app: "a1", image: "ghcr.io/mindroom/backend@sha256:0123abcd" },
      want: ["git:from-image a1 ghcr.io/mindroom/backend@sha256:0123abcd"],
    },
    enableTls: { reason: "letsencrypt:enable", action: { kind: "enableTls", app: "a1" }, want: ["letsencrypt:enable a1"] },
    start: { reason: "ps:start", action: { kind: "start", app: "a1" }, want: ["ps:start a1"] },
    stop: { reason: "ps:stop", action: { kind: "stop", app: "a1" }, want: ["ps:stop a1"] },
    restart: { reason: "ps:restart", action: { kind: "restart", app: "a1" }, want: ["ps:restart a1"] },
    destroyApp: { reason: "global --force first skips the confirmation prompt", action: { kind: "destroyApp", app: "a1" }, want: ["--force apps:destroy a1"] },
    destroyStorage038: {
      reason: "0.38.27 can delete the host directory",
      action: { kind: "destroyStorage", app: "a1", storage },
      want: ["storage:unmount a1 /var/lib/dokku/data/storage/acme-backend-data:/app/storage", "--force storage:destroy acme-backend-data --destroy-host-dir"],
    },
    destroyStorage0380: {
      reason: "before 0.38.27 there is no --destroy-host-dir",
      action: { kind: "destroyStorage", app: "a1", storage },
      version: V0380,
      want: ["storage:unmount a1 /var/lib/dokku/data/storage/acme-backend-data:/app/storage", "--force storage:destroy acme-backend-data"],
    },
    destroyStorage030: {
      reason: "before 0.38 there are no storage entries: unmount only",
      action: { kind: "destroyStorage", app: "a1", storage },
      version: V030,
      want: ["storage:unmount a1 /var/lib/dokku/data/storage/acme-backend-data:/app/storage"],
    },
  };
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => {
      const got = actionCommands(tc.action, tc.version ?? V038).map((c) => renderCommand(c.argv));
      expect(got, tc.reason).toEqual(tc.want);
    });
  }
});

describe("refused before sending", () => {
  const cases: Record<string, { reason: string; fn: () => unknown; want: string }> = {
    upperCaseApp: { reason: "Dokku app names are lower case", fn: () => actionCommands({ kind: "createApp", app: "Acme" }, V038), want: "InvalidAppName" },
    injectedApp: { reason: "no shell metacharacters", fn: () => actionCommands({ kind: "createApp", app: "a;id" }, V038), want: "InvalidAppName" },
    flagApp: { reason: "a leading dash would be a flag", fn: () => actionCommands({ kind: "start", app: "-n" }, V038), want: "InvalidAppName" },
    spaceImage: { reason: "git:* splits on whitespace", fn: () => actionCommands({ kind: "deployImage", app: "a1", image: "nginx 1.27" }, V038), want: "InvalidImage" },
    quotedImage: { reason: "quotes arrive literally in git:*", fn: () => actionCommands({ kind: "deployImage", app: "a1", image: "'nginx:1.27'" }, V038), want: "InvalidImage" },
    badDomain: { reason: "domains are lower-case host names", fn: () => actionCommands({ kind: "setDomains", app: "a1", domains: ["$(id).example.com"] }, V038), want: "InvalidDomain" },
    wildcardDomain: { reason: "* would glob in the forced command", fn: () => actionCommands({ kind: "setDomains", app: "a1", domains: ["*.example.com"] }, V038), want: "InvalidDomain" },
    badEntry: { reason: "entries are DNS labels", fn: () => actionCommands({ kind: "ensureStorage", app: "a1", storage: { entry: "a b", mountPath: "/x" } }, V038), want: "InvalidStorage" },
    dotDotMount: { reason: "no parent traversal", fn: () => actionCommands({ kind: "ensureStorage", app: "a1", storage: { entry: "ab", mountPath: "/app/../etc" } }, V038), want: "InvalidStorage" },
    colonMount: { reason: "a colon would add mount options", fn: () => actionCommands({ kind: "ensureStorage", app: "a1", storage: { entry: "ab", mountPath: "/app:ro" } }, V038), want: "InvalidStorage" },
    badKey: { reason: "keys must be identifiers", fn: () => configSetCommands("a1", { "FOO-BAR": "x" }), want: "InvalidConfigKey" },
    hugeValue: { reason: "one value whose encoding exceeds the argument limit", fn: () => configSetCommands("a1", { BIG: "x".repeat(100 * 1024) }), want: "ConfigValueTooLarge" },
    badCpu: { reason: "cpus must be positive", fn: () => actionCommands({ kind: "setResources", app: "a1", resources: { memoryMb: 512, cpus: 0 } }, V038), want: "InvalidResources" },
    badMemory: { reason: "memory must be an integer", fn: () => actionCommands({ kind: "setResources", app: "a1", resources: { memoryMb: 1.5, cpus: 1 } }, V038), want: "InvalidResources" },
    rawQuote: { reason: "renderCommand refuses any unsafe word", fn: () => renderCommand(["ps:report", "it's"]), want: "UnsafeArgument" },
    rawEchoOption: { reason: "echo would swallow -n", fn: () => renderCommand(["ps:report", "-n"]), want: "UnsafeArgument" },
    rawFlagWord: { reason: "parse_args honours --app anywhere", fn: () => renderCommand(["ps:report", "--app", "x"]), want: "UnsafeArgument" },
  };
  for (const [name, tc] of Object.entries(cases)) test(name, () => expect(reasonOf(tc.fn), tc.reason).toBe(tc.want));

  test("messages never contain config values", () => {
    const secret = "s3cr3t-".repeat(20_000);
    let message = "";
    try {
      configSetCommands("a1", { TOKEN: secret });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain("TOKEN");
    expect(message).not.toContain("s3cr3t");
  });
});

describe("configSetCommands", () => {
  const hostile = {
    QUOTES: `it's "quoted" \\ back\\slash`,
    SUBST: "$(id) `id` $HOME ${PATH}",
    ECHO_FLAG: "-n",
    NEWLINE: "line1\nline2\r\n",
    UNICODE: "héllo wörld 🚀 日本語",
    FLAGWORD: " --quiet --app other --force ",
    EMPTY: "",
  };

  test("hostile values are base64-encoded and decode byte-exact", () => {
    const commands = configSetCommands("acme-backend", hostile);
    expect(commands).toHaveLength(1);
    const line = renderCommand(commands[0]!.argv);
    expect(line.startsWith("--quiet config:set --encoded --no-restart acme-backend ")).toBe(true);
    expect(decodePairs(line)).toEqual(hostile);
  });

  test("large sets are split under the command limit and lose nothing", () => {
    const env: Record<string, string> = {};
    for (let i = 0; i < 30; i++) env[`K${i}`] = String(i).repeat(20_000);
    const lines = configSetCommands("a1", env).map((c) => renderCommand(c.argv));
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(Buffer.byteLength(line)).toBeLessThanOrEqual(MAX_COMMAND_BYTES);
    expect(Object.assign({}, ...lines.map(decodePairs))).toEqual(env);
  });

  test("a value just under the limit fits in one command", () => {
    const lines = configSetCommands("a1", { BIG: "é".repeat(45_000) }).map((c) => renderCommand(c.argv));
    expect(lines).toHaveLength(1);
    expect(decodePairs(lines[0]!)).toEqual({ BIG: "é".repeat(45_000) });
  });
});

describe("backupCommand", () => {
  test("0.38 streams the entry with storage:exec", () => {
    expect(renderCommand(backupCommand("a1", storage, V038).argv)).toBe("storage:exec acme-backend-data -- tar -C /data -czf - .");
  });
  test("before 0.38 a one-off run container tars the mount path", () => {
    expect(renderCommand(backupCommand("a1", storage, V030).argv)).toBe("run a1 tar -C /app/storage -czf - .");
  });
});
