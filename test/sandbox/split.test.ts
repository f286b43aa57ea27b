import { spawnSync } from "node:child_process";

import fc from "fast-check";
import { describe, expect, test } from "vitest";

import {
  ECHO_HELP,
  resolveCommand,
  stripLeadingFlags,
  xargsEchoSplit,
  xargsSplit,
} from "../../src/drivers/dokku/sandbox/split.ts";
import { normalizeVersion } from "../../src/drivers/dokku/sandbox/version.ts";

const V38 = "0.38.27";
const V34 = "0.34.0";
const V30 = "0.30.0";

/** The §3.2 quoting table, row by row (rule b, 0.34+). */
const table: Record<string, { reason: string; sent: string; args: string[]; stderr?: RegExp }> = {
  grouping: {
    reason: "quotes group words and are removed; backslash escapes outside quotes",
    sent: `config:set app A='hello world' B="x y" C=a\\ b`,
    args: ["config:set", "app", "A=hello world", "B=x y", "C=a b"],
  },
  singleQuoteEscape: { reason: "'\\'' idiom", sent: `config:set app 'K=it'\\''s'`, args: ["config:set", "app", "K=it's"] },
  doubleInSingle: { reason: "double quotes literal inside single", sent: `config:set app 'K=say "hi"'`, args: ["config:set", "app", 'K=say "hi"'] },
  backslashInSingle: { reason: "backslash literal inside quotes", sent: `config:set app 'K=a\\b\\\\c'`, args: ["config:set", "app", "K=a\\b\\\\c"] },
  dollar: { reason: "$, backticks literal", sent: "config:set app 'K=$HOME `id` $(id)'", args: ["config:set", "app", "K=$HOME `id` $(id)"] },
  tab: { reason: "tab kept inside quotes", sent: "config:set app 'K=tab\tx'", args: ["config:set", "app", "K=tab\tx"] },
  unmatchedDouble: {
    reason: "escaped double quote inside double quotes: truncated, command still runs",
    sent: `config:set app "K=say \\"hi\\""`,
    args: ["config:set", "app"],
    stderr: /^xargs: unmatched double quote; by default quotes are special to xargs unless you use the -0 option\n$/,
  },
  newlineInQuotes: {
    reason: "newline inside quotes truncates; earlier pairs survive",
    sent: "config:set app A=1 'B=x\ny' C=3",
    args: ["config:set", "app", "A=1"],
    stderr: /unmatched single quote/,
  },
  dashN: { reason: "echo swallows -n forms", sent: "logs app -n 50 '-en' -nE", args: ["logs", "app", "50"] },
  dashE: { reason: "echo -e/-E print an empty line", sent: "x -e -E", args: ["x", "", ""] },
  unchanged: {
    reason: "other dash words pass",
    sent: "x -x -ne5 -- - --help=x -C -czf",
    args: ["x", "-x", "-ne5", "--", "-", "--help=x", "-C", "-czf"],
  },
  empty: { reason: "'' is an empty argument", sent: "config:set app K='' '' x", args: ["config:set", "app", "K=", "", "x"] },
};

describe("rule (b) quoting table", () => {
  for (const [name, tc] of Object.entries(table)) {
    test(name, () => {
      const r = resolveCommand(tc.sent, V38);
      expect(r.argv, tc.reason).toEqual(tc.args);
      if (tc.stderr) expect(r.stderr, tc.reason).toMatch(tc.stderr);
      else expect(r.stderr, tc.reason).toBe("");
    });
  }

  test("--help becomes the echo help text, one argument per line", () => {
    const r = resolveCommand("postgres:info svc --help", V38);
    expect(r.argv.slice(2)).toEqual(ECHO_HELP);
    expect(r.argv.length).toBeGreaterThan(30);
  });

  test("131072-byte buffer: a long argument fits, a longer one and all after are dropped", () => {
    const ok = "x".repeat(131_000);
    expect(resolveCommand(`config:set app K=${ok} B=1`, V38).argv).toEqual(["config:set", "app", `K=${ok}`, "B=1"]);
    const r = resolveCommand(`config:set app A=1 K=${"x".repeat(140_000)} B=1`, V38);
    expect(r.argv).toEqual(["config:set", "app", "A=1"]);
    expect(r.stderr).toBe("xargs: argument line too long\n");
    // exact edge as measured on GNU xargs 4.9.0 with the default `echo` command: 131066 fits
    expect(xargsSplit("y".repeat(131_066), 5).stderr).toBe("");
    expect(xargsSplit("y".repeat(131_067), 5).stderr).toBe("xargs: argument line too long\n");
  });
});

describe("version differences", () => {
  test("rule (a): any first word containing git splits on whitespace, quotes literal", () => {
    const r = resolveCommand("git:from-image app 'nginx:1.27'", V38);
    expect(r.argv).toEqual(["git:from-image", "app", "'nginx:1.27'"]);
    expect(resolveCommand("digitalocean:x 'a b'", V34).argv).toEqual(["digitalocean:x", "'a", "b'"]);
  });

  test("before 0.34 only config*/docker-options* get xargs (no echo quirks)", () => {
    expect(resolveCommand("config:set app A='x y' -n", V30).argv).toEqual(["config:set", "app", "A=x y", "-n"]);
    expect(resolveCommand("domains:add app 'a b'", V30).argv).toEqual(["domains:add", "app", "'a", "b'"]);
    expect(resolveCommand("logs app -n 5", V30).argv).toEqual(["logs", "app", "-n", "5"]);
  });

  test("0.34 applies rule (b) to non-git commands", () => {
    expect(resolveCommand("domains:add app 'a b'", V34).argv).toEqual(["domains:add", "app", "a b"]);
  });

  test("shorthand versions", () => {
    expect(normalizeVersion("0.38")).toBe("0.38.27");
    expect(normalizeVersion(undefined)).toBe("0.38.27");
    expect(() => normalizeVersion("latest")).toThrow(/invalid dokku version/);
  });
});

describe("global flags", () => {
  test("leading flags are stripped and set", () => {
    const r = resolveCommand("--quiet --force apps:destroy foo", V38);
    expect(r.argv).toEqual(["apps:destroy", "foo"]);
    expect(r.flags).toMatchObject({ quiet: true, force: true, trace: false });
  });

  test("a flag after the command is seen and also passed on", () => {
    const r = resolveCommand("apps:destroy foo --force", V38);
    expect(r.argv).toEqual(["apps:destroy", "foo", "--force"]);
    expect(r.flags.force).toBe(true);
  });

  test("a standalone flag word inside a quoted value is seen by pass 1", () => {
    const r = resolveCommand("config:set app 'K=a --quiet b'", V38);
    expect(r.flags.quiet).toBe(true);
    expect(r.argv).toEqual(["config:set", "app", "K=a --quiet b"]);
  });

  test("--app prepends the app to the plugin arguments", () => {
    expect(resolveCommand("--app foo ps:report", V38).argv).toEqual(["ps:report", "foo"]);
    expect(stripLeadingFlags(["--app", "x", "--trace", "v"])).toEqual(["v"]);
  });
});

/** Differential check against the real pipeline Dokku runs, when GNU xargs is present. */
function realXargsEcho(input: string): { args: string[]; stderr: string } {
  const p = spawnSync("xargs", ["-n", "1"], { input, encoding: "utf8" });
  const out = p.stdout;
  const lines = out === "" ? [] : out.replace(/\n$/, "").split("\n");
  return { args: lines, stderr: p.stderr };
}

const hasXargs = spawnSync("xargs", ["--version"], { encoding: "utf8" }).stdout.includes("GNU findutils");

describe("agrees with GNU xargs -n 1 + echo", () => {
  test("xargs is available on this machine", () => expect(hasXargs).toBe(true));

  test("random strings over a hostile alphabet", () => {
    const alphabet = fc.constantFrom(" ", "\t", "\n", "'", '"', "\\", "a", "b", "-", "n", "e", "$", "=", "é");
    fc.assert(
      fc.property(fc.array(alphabet, { minLength: 1, maxLength: 24 }), (chars) => {
        const input = chars.join("");
        const want = realXargsEcho(input);
        const got = xargsEchoSplit(input);
        expect(got.args).toEqual(want.args);
        expect(got.stderr).toBe(want.stderr);
      }),
      { numRuns: 400, seed: 4242 },
    );
  });
});

test("a trailing '' at the very end of the command is lost (xargs reads it as EOF)", () => {
  expect(resolveCommand("config:set app K=1 ''", V38).argv).toEqual(["config:set", "app", "K=1"]);
  expect(resolveCommand("config:set app '' K=1", V38).argv).toEqual(["config:set", "app", "", "K=1"]);
});
