/**
 * What the one-shot commands that look at hosts need: the database, key material, a driver and a
 * reconciler built exactly as the daemon builds them. In sandbox mode the sandbox host lives in
 * the `serve` process, so these commands reach it only while `serve` runs.
 */

import { resolve } from "node:path";

import type { Sql } from "postgres";
import { Registry } from "prom-client";

import { createBackupStore } from "../drivers/backup-store/index.ts";
import { createDokkuDriver } from "../drivers/dokku/driver.ts";
import { Observer } from "../reconciler/observe.ts";
import type { Reconciler } from "../reconciler/reconcile.ts";
import { buildReconciler, hostOrphans } from "../runtime/controller.ts";
import { needsSandbox } from "../runtime/hosts.ts";
import { loadKeyMaterial } from "../runtime/secrets.ts";
import { listHosts, pinHostKey } from "../state/hosts.ts";
import { resolveInstanceKey } from "../state/instances.ts";
import type { CommandContext } from "./common.ts";

export interface ControllerContext {
  readonly reconciler: Reconciler;
  /** Apps on each enabled host that belong to no live instance (reported, never destroyed here). */
  orphans(): Promise<{ host: string; apps: string[] }[]>;
  close(): Promise<void>;
}

export async function openControllerContext(ctx: CommandContext, epoch: () => number | undefined): Promise<ControllerContext> {
  const { config, db } = ctx;
  const sandboxMode = await needsSandbox(db.sql, config);
  const keys = await loadKeyMaterial(config, sandboxMode);
  const driver = createDokkuDriver({
    privateKey: keys.sshPrivateKey,
    registry: new Registry(),
    logger: ctx.logger,
    commandTimeoutMs: config.dokkuCommandTimeoutMs,
    onHostKeyLearned: (hostId, hostKey) => pinHostKey(db.sql, hostId, hostKey),
  });
  const now = () => new Date();
  const observer = new Observer({ driver, hostTtlMs: 5_000, deepIntervalMs: 0, now: () => Date.now() });
  const reconciler = buildReconciler({ sql: db.sql, config, driver, observer, masterKey: keys.masterKey, backupStore: createBackupStore(config, resolve(config.dataDir)), now, epoch });
  return {
    reconciler,
    orphans: async () => {
      const result: { host: string; apps: string[] }[] = [];
      for (const host of (await listHosts(db.sql)).filter((h) => h.enabled)) {
        const { orphans } = await hostOrphans(db.sql, observer, host, AbortSignal.timeout(60_000));
        result.push({ host: host.name, apps: orphans });
      }
      return result;
    },
    close: () => driver.close(),
  };
}

/** Resolves an instance id, a subdomain, a subscription id or a `sub_...` to the work-queue key. */
export const resolveKey = resolveInstanceKey;

/** Every key worth planning: subscriptions with a live instance or one that should get one. */
export async function allKeys(sql: Sql): Promise<string[]> {
  const { createInstanceStore } = await import("../state/instances.ts");
  return createInstanceStore(sql).listKeys();
}
