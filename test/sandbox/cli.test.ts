import { expect, test, vi } from "vitest";

import { run } from "../../src/drivers/dokku/sandbox/cli.ts";

test("bad arguments: one line on stderr, exit 2", async () => {
  const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    expect(await run(["--port", "nope"])).toBe(2);
    expect(await run(["--dokku-version", "latest"])).toBe(2);
    expect(await run(["--bogus"])).toBe(2);
    expect(err).toHaveBeenCalledTimes(3);
  } finally {
    err.mockRestore();
  }
});

test("starts, prints the SSH URL, host key, ingress and the any-key warning, stops on signal", async () => {
  const lines: string[] = [];
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    lines.push(String(chunk));
    return true;
  });
  const stop = new AbortController();
  try {
    const done = run(["--dokku-version", "0.34"], stop.signal);
    await vi.waitFor(() => expect(lines.join("")).toContain("accepts ANY client key"));
    const text = lines.join("");
    expect(text).toMatch(/ssh:\/\/dokku@127\.0\.0\.1:\d+/);
    expect(text).toMatch(/host key: +ssh-ed25519 AAAA/);
    expect(text).toMatch(/ingress url: +http:\/\/127\.0\.0\.1:\d+/);
    stop.abort();
    expect(await done).toBe(0);
  } finally {
    out.mockRestore();
  }
});
