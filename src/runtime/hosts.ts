/**
 * Which Dokku hosts the daemon drives. DOKKU_HOSTS, when set, is upserted into `dokku_hosts`.
 * Otherwise the hosts already in the table are used; when there are none but the sandbox's own,
 * an in-process sandbox Dokku host starts on loopback (state in DATA_DIR/sandbox) and is
 * registered as host `sandbox`, with its key pinned and its ingress used by the health prober.
 */
import { join, resolve } from "node:path";

import type { Sql } from "postgres";

import type { Config } from "../config.ts";
import type { Sandbox } from "../drivers/dokku/sandbox/index.ts";
import type { Logger } from "../logger.ts";
import { listHosts, registerSandboxHost, upsertHost } from "../state/hosts.ts";

export const SANDBOX_HOST_NAME = "sandbox";

export interface HostSetup {
  readonly sandbox: Sandbox | undefined;
  close(): Promise<void>;
}

/** True when no real host is configured or registered: the daemon runs against a sandbox. */
export async function needsSandbox(sql: Sql, config: Config): Promise<boolean> {
  if (config.dokkuHosts) return false;
  const hosts = await listHosts(sql);
  return !hosts.some((host) => host.enabled && host.name !== SANDBOX_HOST_NAME);
}

export async function setUpHosts(sql: Sql, config: Config, logger: Logger, sandboxMode: boolean, clientPublicKey: string): Promise<HostSetup> {
  if (config.dokkuHosts) {
    for (const url of config.dokkuHosts) await upsertHost(sql, { name: hostNameOf(url), sshUrl: url });
    logger.info({ hosts: config.dokkuHosts.length }, "using the Dokku hosts of DOKKU_HOSTS");
    return { sandbox: undefined, close: async () => {} };
  }
  if (!sandboxMode) return { sandbox: undefined, close: async () => {} };
  const { startSandbox } = await import("../drivers/dokku/sandbox/index.ts");
  const sandbox = await startSandbox({
    stateDir: join(resolve(config.dataDir), "sandbox"),
    dokkuVersion: config.sandboxDokkuVersion,
    authorizedKeys: [clientPublicKey],
  });
  // Only the process that runs this sandbox (the DATA_DIR owner, see main.ts) writes its row.
  await registerSandboxHost(sql, { name: SANDBOX_HOST_NAME, sshUrl: sandbox.sshUrl, ingressUrl: sandbox.ingressUrl, hostKey: sandbox.hostKey, capacity: 1000, maxCommandBytes: sandbox.maxCommandBytes });
  logger.warn(
    { sshUrl: sandbox.sshUrl, ingressUrl: sandbox.ingressUrl, dokkuVersion: sandbox.version },
    "SANDBOX MODE: no Dokku host is configured, so instances run on an in-process sandbox Dokku host on loopback (set DOKKU_HOSTS for real hosts)",
  );
  return { sandbox, close: () => sandbox.close() };
}

/** `ssh://dokku@host.example.com:22` → `host.example.com` (with `-PORT` when not 22). */
export function hostNameOf(url: string): string {
  const parsed = new URL(url);
  const port = parsed.port && parsed.port !== "22" ? `-${parsed.port}` : "";
  return `${parsed.hostname}${port}`.replace(/[^A-Za-z0-9._-]/g, "-");
}
