/**
 * The daemon: the only place that wires concrete pieces together. Start-up order: database
 * (embedded when no DATABASE_URL), migrations, seed of a brand-new embedded database, HTTP.
 * Later pieces (controller, sources, prober) attach to the same lifecycle.
 */
import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";

import type { Sql } from "postgres";
import { collectDefaultMetrics, Registry } from "prom-client";
import ssh2 from "ssh2";

import type { Config } from "./config.ts";
import { createBackupStore } from "./drivers/backup-store/index.ts";
import type { BackupStore } from "./drivers/backup-store/types.ts";
import type { Sandbox } from "./drivers/dokku/sandbox/index.ts";
import { baseRoutes, closeServer, createHttpServer, type Handler, listen, type Routes, sendJson } from "./http.ts";
import type { Logger } from "./logger.ts";
import { once } from "./once.ts";
import { DOWNLOAD_PREFIX, downloadHandler } from "./runtime/backup-links.ts";
import { openArchive } from "./runtime/backups.ts";
import { type ControllerRuntime, type ControllerTuning,createControllerRuntime } from "./runtime/controller.ts";
import { needsSandbox, setUpHosts } from "./runtime/hosts.ts";
import { loadKeyMaterial, webhookSecrets } from "./runtime/secrets.ts";
import { type Api, createApi } from "./sources/api/server.ts";
import { createStripeMetrics } from "./sources/stripe/metrics.ts";
import { startStripeSources, type StripeSourcesDeps } from "./sources/stripe/sources.ts";
import { acquireDataDirLock } from "./state/data-dir-lock.ts";
import { connect, type Database, openDatabase, seed } from "./state/db.ts";
import { withDeadline } from "./state/deadline.ts";
import { superviseEmbeddedPostgres } from "./state/embedded-supervisor.ts";
import { migrate, migrationStatus } from "./state/migrate.ts";
import { registerPoolMetrics } from "./state/pool-metrics.ts";
import { sendReconcileRequest } from "./state/reconcile-requests.ts";

/**
 * Connections to the database, split so that a webhook burst cannot starve the controller: the
 * Stripe webhook inserts through a pool of its own (a burst queues there), the inbox worker's
 * thread has its own (one per customer batch it works on at once: 4 in API mode, 1 in payload
 * mode), and the lease renewal, the controller's writes and everything else keep the rest.
 * Together they stay at 20, within what a Supabase session pooler grants one client.
 */
const CONTROLLER_POOL_MAX = 10;
const WEBHOOK_POOL_MAX = 6;
const INBOX_POOL_MAX = 4;
const POOL_MAX = CONTROLLER_POOL_MAX + WEBHOOK_POOL_MAX + INBOX_POOL_MAX;

export interface Daemon {
  readonly port: number;
  readonly controller: ControllerRuntime;
  readonly sandbox: Sandbox | undefined;
  readonly db: Database;
  readonly registry: Registry;
  /**
   * Resolves (with the reason) when the daemon cannot go on and must exit 1 so that its own
   * supervisor restarts it: the embedded Postgres kept dying. Never rejects.
   */
  readonly fatal: Promise<string>;
  /** Stops everything in reverse start order. Idempotent. */
  stop(): Promise<void>;
}

export interface DaemonOptions {
  /** Test seams: lease timings, observe rotation, the clock. */
  readonly tuning?: Partial<ControllerTuning>;
}

/**
 * Starts the daemon. Before anything else it takes the DATA_DIR lock, so a second `serve` on the
 * same directory throws DataDirBusyError having changed nothing (no Postgres adopted, no sandbox
 * started, no `dokku_hosts` row rewritten).
 */
export async function startDaemon(config: Config, logger: Logger, options: DaemonOptions = {}): Promise<Daemon> {
  const dataDir = resolve(config.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o711 });
  const lock = await acquireDataDirLock(dataDir);
  const stops: (() => Promise<void>)[] = [() => lock.release()];
  try {
    // The port is bound before anything changes too: a port in use fails the start cleanly.
    const routes: Routes = { ...startingRoutes() };
    const server = createHttpServer(routes, (error) => logger.error({ err: error }, "request failed"));
    const bound = await listen(server, config.port);
    stops.push(() => closeServer(server));
    const applicationName = `mindroom-reconciler:${hostname()}:${process.pid}`;
    const db = await openDatabase({ databaseUrl: config.databaseUrl, dataDir, lock, dbStatementTimeoutMs: config.dbStatementTimeoutMs }, (message) => logger.info(message), { max: CONTROLLER_POOL_MAX, applicationName });
    stops.push(() => db.close());
    const webhookSql = connect(db.url, { max: WEBHOOK_POOL_MAX, applicationName, statementTimeoutMs: config.dbStatementTimeoutMs });
    stops.push(() => webhookSql.end({ timeout: 5 }));
    const result = await migrate(db.sql);
    logger.info({ applied: result.applied, migration: result.current }, "database migrated");
    if (db.created) {
      await seed(db.sql);
      logger.info("brand-new embedded database: demo seed loaded");
    }
    const registry = new Registry();
    collectDefaultMetrics({ register: registry });
    registerPoolMetrics(registry, db.sql, applicationName, POOL_MAX);
    let declareFatal: (reason: string) => void = () => {};
    const fatal = new Promise<string>((resolveFatal) => (declareFatal = resolveFatal));
    if (db.ownedServer) {
      // Only here, in `serve` holding the DATA_DIR lock, is the embedded server supervised.
      const supervisor = superviseEmbeddedPostgres({ server: db.ownedServer, registry, logger: logger.child({ component: "embedded-postgres" }), onExhausted: declareFatal });
      stops.push(() => supervisor.stop());
    }
    const sandboxMode = await needsSandbox(db.sql, config);
    const keys = await loadKeyMaterial(config, sandboxMode);
    const hosts = await setUpHosts(db.sql, config, logger, sandboxMode, publicKeyOf(keys.sshPrivateKey));
    stops.push(() => hosts.close());
    const backupStore = createBackupStore(config, dataDir);
    const controller = createControllerRuntime({
      sql: db.sql,
      config,
      logger,
      registry,
      sshPrivateKey: keys.sshPrivateKey,
      masterKey: keys.masterKey,
      backupStore,
      ...(options.tuning ? { tuning: options.tuning } : {}),
    });
    const stopController = new AbortController();
    const controllerDone = controller.run(stopController.signal);
    stops.push(async () => {
      stopController.abort();
      await controllerDone;
    });
    const inboxThread = { databaseUrl: db.url, applicationName, poolMax: INBOX_POOL_MAX, statementTimeoutMs: config.dbStatementTimeoutMs, debug: logger.isLevelEnabled("debug"), onFatal: declareFatal };
    const stripe = await startStripe({ sql: db.sql, webhookSql, inboxThread }, config, logger, registry, sandboxMode);
    stops.push(stripe.stop);
    const api = await startApi({ sql: db.sql, config, logger, registry, backupStore, masterKey: keys.masterKey });
    stops.push(api.close);
    Object.assign(routes, baseRoutes(registry, { notReadyReason: () => readiness(db) }), apiRoutes(api.handler), {
      "POST /webhooks/stripe": stripe.webhook,
      [`GET ${DOWNLOAD_PREFIX}*`]: downloadHandler({ sql: db.sql, store: backupStore, masterKey: keys.masterKey, now: () => new Date(), logger }),
    });
    logger.info({ address: bound.address, port: bound.port }, `listening on http://${bound.address}:${bound.port} (/healthz, /readyz, /metrics, /webhooks/stripe, /v1)`);
    return { port: bound.port, db, registry, controller, sandbox: hosts.sandbox, fatal, stop: once(() => runStops(stops, logger)) };
  } catch (error) {
    await runStops(stops, logger);
    throw error;
  }
}

/** The Stripe webhook, inbox worker and catch-up; every replica serves the webhook. */
async function startStripe(pools: { sql: Sql; webhookSql: Sql; inboxThread: NonNullable<StripeSourcesDeps["thread"]> }, config: Config, logger: Logger, registry: Registry, sandboxMode: boolean): Promise<{ webhook: Handler; stop: () => Promise<void> }> {
  const { secrets, generated } = await webhookSecrets(config, sandboxMode);
  const webhookSecretFile = join(resolve(config.dataDir), "stripe_webhook_secret");
  if (generated) logger.warn({ webhookSecretFile }, "SANDBOX MODE: generated a Stripe webhook secret; `mindroom-reconciler stripe send` uses it");
  else if (sandboxMode && config.stripe.webhookSecrets.length === 0) logger.warn({ webhookSecretFile }, "SANDBOX MODE: using the Stripe webhook secret generated earlier; `mindroom-reconciler stripe send` uses it");
  const stopping = new AbortController();
  const sources = startStripeSources(
    { sql: pools.sql, webhookSql: pools.webhookSql, thread: pools.inboxThread, config: { stripe: { ...config.stripe, webhookSecrets: secrets }, dbRequestTimeoutMs: config.dbRequestTimeoutMs }, metrics: createStripeMetrics(registry), logger: logger.child({ component: "stripe" }) },
    stopping.signal,
  );
  const webhook: Handler = sources.webhook ?? ((_req, res) => sendJson(res, 503, { error: "STRIPE_WEBHOOK_SECRET is not set: this daemon cannot verify Stripe webhooks" }));
  return {
    webhook,
    stop: async () => {
      stopping.abort();
      await sources.done;
    },
  };
}

/** The customer API on every replica; its writes reach the leader through the database. */
async function startApi(wiring: { sql: Sql; config: Config; logger: Logger; registry: Registry; backupStore: BackupStore; masterKey: string }): Promise<Api> {
  const { sql, config } = wiring;
  return createApi({
    sql,
    logger: wiring.logger.child({ component: "api" }),
    registry: wiring.registry,
    requestTimeoutMs: config.dbRequestTimeoutMs,
    gracePeriodMs: config.gracePeriodMs,
    retentionPeriodMs: config.retentionPeriodMs,
    manualBackupsPerDay: config.backups.manualPerDay,
    trustProxy: config.apiTrustProxy,
    openArchive: (backupId, signal) => openArchive({ sql, store: wiring.backupStore, masterKey: wiring.masterKey }, backupId, signal),
    requestReconcile: (subscriptionId) => sendReconcileRequest(sql, { key: subscriptionId, request: randomUUID(), deep: true }),
  });
}

/** Every method under `/v1/` goes to the API's own router. */
function apiRoutes(handler: Handler): Routes {
  return Object.fromEntries(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"].map((method) => [`${method} /v1/*`, handler]));
}

/** What answers while the daemon starts: alive, not ready. */
function startingRoutes(): Routes {
  return {
    "GET /healthz": (_req, res) => sendJson(res, 200, { status: "alive" }),
    "GET /readyz": (_req, res) => sendJson(res, 503, { status: "not ready", reason: "starting" }),
  };
}

/** /readyz answers within this whatever the database does (a load balancer's probe is short). */
const READINESS_DEADLINE_MS = 2_000;

async function readiness(db: Database): Promise<string | undefined> {
  try {
    const status = await withDeadline(READINESS_DEADLINE_MS - 250, "readiness probe", () => migrationStatus(db.sql));
    return status.pending > 0 ? `${status.pending} migrations pending` : undefined;
  } catch (error) {
    return `database unreachable: ${(error as Error).message}`;
  }
}

async function runStops(stops: (() => Promise<void>)[], logger: Logger): Promise<void> {
  for (const stop of stops.reverse()) {
    await stop().catch((error: unknown) => logger.error({ err: error }, "error while stopping"));
  }
}


function publicKeyOf(privateKey: string): string {
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (!key || key instanceof Error) throw new Error("the SSH private key cannot be parsed", { cause: key });
  return `${key.type} ${key.getPublicSSH().toString("base64")}`;
}
