import ssh2 from "ssh2";
import { describe, expect, test } from "vitest";

import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";

describe("generateEd25519KeyPair", () => {
  test("every generated pair parses back (ssh2's raw generator yields an unparsable key now and then)", () => {
    for (let i = 0; i < 1000; i++) {
      const pair = generateEd25519KeyPair();
      const parsed = ssh2.utils.parseKey(pair.private);
      expect(parsed instanceof Error ? parsed.message : "ok").toBe("ok");
      expect(pair.public).toMatch(/^ssh-ed25519 [A-Za-z0-9+/=]+/);
    }
  });
});
