import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { describe, expect, test } from "vitest";

import { ConfigError, loadConfig } from "../../src/config.ts";
import { createBackupStore } from "../../src/drivers/backup-store/index.ts";

const S3_ENV = { BACKUP_STORE: "s3", S3_BUCKET: "mindroom-backups", S3_ACCESS_KEY_ID: "AKIAEXAMPLE", S3_SECRET_ACCESS_KEY: "very-secret-value" };

const cases: Record<string, { reason: string; env: Record<string, string>; variable: string; message: RegExp }> = {
  "unknown store": { reason: "three stores exist", env: { BACKUP_STORE: "ftp" }, variable: "BACKUP_STORE", message: /expected local, s3 or supabase \(got "ftp"\)/ },
  "s3 without a bucket": { reason: "nowhere to write", env: { ...S3_ENV, S3_BUCKET: "" }, variable: "BACKUP_STORE", message: /s3 needs S3_BUCKET to be set/ },
  "s3 without credentials": {
    reason: "the store signs every request",
    env: { BACKUP_STORE: "s3", S3_BUCKET: "b-1" },
    variable: "BACKUP_STORE",
    message: /s3 needs S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY to be set/,
  },
  "bad bucket name": { reason: "S3 bucket naming rules", env: { ...S3_ENV, S3_BUCKET: "Has_Upper" }, variable: "S3_BUCKET", message: /S3 bucket name/ },
  "bad endpoint": { reason: "endpoints are URLs", env: { ...S3_ENV, S3_ENDPOINT: "minio:9000" }, variable: "S3_ENDPOINT", message: /http\(s\):\/\/ URL/ },
  "bad path style": { reason: "a boolean", env: { ...S3_ENV, S3_FORCE_PATH_STYLE: "yes" }, variable: "S3_FORCE_PATH_STYLE", message: /true or false/ },
  "prefix without trailing slash": { reason: "keys are appended to the prefix", env: { ...S3_ENV, S3_PREFIX: "mindroom" }, variable: "S3_PREFIX", message: /ending in \// },
  "supabase without a key": { reason: "the service role key authorises storage", env: { BACKUP_STORE: "supabase", SUPABASE_URL: "https://x.supabase.co" }, variable: "BACKUP_STORE", message: /SUPABASE_SERVICE_ROLE_KEY/ },
  "bad supabase bucket": { reason: "bucket names are path segments", env: { SUPABASE_BACKUP_BUCKET: "a/b" }, variable: "SUPABASE_BACKUP_BUCKET", message: /bucket name/ },
};

describe("backup store configuration", () => {
  for (const [name, tc] of Object.entries(cases)) {
    test(name, () => {
      let thrown: unknown;
      try {
        loadConfig(tc.env);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, tc.reason).toBeInstanceOf(ConfigError);
      expect((thrown as ConfigError).variable, tc.reason).toBe(tc.variable);
      expect((thrown as ConfigError).message, tc.reason).toMatch(tc.message);
      expect((thrown as ConfigError).message.split("\n"), "one line").toHaveLength(1);
    });
  }

  test("defaults: local store, us-east-1, mindroom/ prefix, virtual-hosted style, bucket backups", () => {
    const config = loadConfig({});
    expect(config.backupStore).toBe("local");
    expect(config.s3).toMatchObject({ region: "us-east-1", prefix: "mindroom/", forcePathStyle: false, endpoint: undefined });
    expect(config.supabase.backupBucket).toBe("backups");
  });

  test("an S3 secret is never echoed", () => {
    // S3_SECRET_ACCESS_KEY has no format to fail; SUPABASE_SERVICE_ROLE_KEY neither: check the combination error.
    let message = "";
    try {
      loadConfig({ BACKUP_STORE: "s3", S3_SECRET_ACCESS_KEY: "very-secret-value" });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/S3_BUCKET/);
    expect(message).not.toContain("very-secret-value");
  });

  test("createBackupStore picks the configured store", () => {
    const dir = mkdtempSync(join(tmpdir(), "store-config-"));
    expect(createBackupStore(loadConfig({}), dir).kind).toBe("local");
    expect(createBackupStore(loadConfig({ ...S3_ENV, S3_ENDPOINT: "http://127.0.0.1:9", S3_FORCE_PATH_STYLE: "true" }), dir).kind).toBe("s3");
    expect(createBackupStore(loadConfig({ BACKUP_STORE: "supabase", SUPABASE_URL: "http://127.0.0.1:9", SUPABASE_SERVICE_ROLE_KEY: "k" }), dir).kind).toBe("supabase");
  });

  test("an S3 or Supabase store loads its client on first use and answers through it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "store-config-"));
    const s3 = createBackupStore(loadConfig({ ...S3_ENV, S3_ENDPOINT: "http://127.0.0.1:9", S3_FORCE_PATH_STYLE: "true" }), dir);
    // Nothing listens on port 9: the call reaches the SDK, which fails to connect.
    await expect(s3.get("s3://no-such-bucket/key")).rejects.toThrow();
    await expect(s3.get("file:///not-s3")).rejects.toThrow(/s3/);
    const supabase = createBackupStore(loadConfig({ BACKUP_STORE: "supabase", SUPABASE_URL: "http://127.0.0.1:9", SUPABASE_SERVICE_ROLE_KEY: "k" }), dir);
    await expect(supabase.get("file:///not-supabase")).rejects.toThrow(/supabase/);
  });
});
