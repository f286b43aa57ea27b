/**
 * An in-process controller against real Postgres (a cloned test database with the seed) and a
 * sandbox Dokku host over real SSH. The clock the reconciler sees can be moved forward.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { pino } from "pino";
import { Registry } from "prom-client";

import { loadConfig } from "../../src/config.ts";
import { createLocalStore } from "../../src/drivers/backup-store/local.ts";
import type { BackupStore } from "../../src/drivers/backup-store/types.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { type ControllerRuntime, type ControllerTuning, createControllerRuntime } from "../../src/runtime/controller.ts";
import { seed } from "../../src/state/db.ts";
import { upsertHost } from "../../src/state/hosts.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

export interface Harness {
  readonly db: TestDatabase;
  readonly sandbox: Sandbox;
  readonly runtime: ControllerRuntime;
  readonly registry: Registry;
  readonly backupDir: string;
  /** Moves the reconciler's clock forward. */
  advance(ms: number): void;
  /** The reconciler's clock. */
  now(): Date;
  /** Stops the controller only (the database and the sandbox stay up). */
  stopController(): Promise<void>;
  readonly sshPrivateKey: string;
  readonly masterKey: string;
  stop(): Promise<void>;
}

export interface HarnessOptions {
  readonly env?: Record<string, string>;
  readonly dokkuVersion?: string;
  readonly seed?: boolean;
  readonly tuning?: Partial<ControllerTuning>;
  /** The backup store (default: a local store in the harness's temporary backupDir). */
  readonly backupStore?: BackupStore;
  /** Seed of the sandbox's fault dice, for a reproducible flaky host. */
  readonly sandboxSeed?: number;
}

export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const db = await createTestDatabase({ max: 10 });
  if (options.seed !== false) await seed(db.sql);
  const key = generateEd25519KeyPair();
  const sandbox = await startSandbox({
    dokkuVersion: options.dokkuVersion ?? "0.38",
    authorizedKeys: [key.public],
    ...(options.sandboxSeed !== undefined && { seed: options.sandboxSeed }),
  });
  await upsertHost(db.sql, {
    name: "sandbox",
    sshUrl: sandbox.sshUrl,
    ingressUrl: sandbox.ingressUrl,
    hostKey: sandbox.hostKey,
    capacity: 1000,
    maxCommandBytes: sandbox.maxCommandBytes,
  });
  const backupDir = await mkdtemp(join(tmpdir(), "mindroom-backups-"));
  const config = loadConfig({ RESYNC_INTERVAL: "1s", HEALTH_INTERVAL: "1h", LOG_LEVEL: "warn", ...options.env });
  let offset = 0;
  const registry = new Registry();
  const runtime = createControllerRuntime({
    sql: db.sql,
    config,
    logger: pino({ level: process.env.TEST_LOG_LEVEL ?? "silent" }),
    registry,
    sshPrivateKey: key.private,
    masterKey: MASTER_KEY,
    backupStore: options.backupStore ?? createLocalStore(backupDir),
    tuning: { leaseTtlMs: 3000, leaseRenewDeadlineMs: 2000, leaseRetryPeriodMs: 200, hostObserveTtlMs: 0, deepObserveIntervalMs: 300, gaugeIntervalMs: 500, now: () => new Date(Date.now() + offset), ...options.tuning },
  });
  const stopping = new AbortController();
  const done = runtime.run(stopping.signal);
  return {
    db,
    sandbox,
    runtime,
    registry,
    backupDir,
    advance: (ms) => {
      offset += ms;
    },
    now: () => new Date(Date.now() + offset),
    stopController: async () => {
      stopping.abort();
      await done;
    },
    sshPrivateKey: key.private,
    masterKey: MASTER_KEY,
    stop: async () => {
      stopping.abort();
      await done;
      await sandbox.close();
      await db.drop();
      await rm(backupDir, { recursive: true, force: true });
    },
  };
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function eventually(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for: ${what}`, { cause: lastError });
}

const MASTER_KEY = "test-master-key-0123456789abcdef0123456789";

export const SEED_SUBDOMAINS = ["demo-free", "demo-starter", "demo-pro", "demo-enterprise"] as const;
export const COMPONENT_NAMES = ["matrix", "backend", "frontend"] as const;

export function appsOf(subdomain: string): string[] {
  return COMPONENT_NAMES.map((component) => `${subdomain}-${component}`);
}
