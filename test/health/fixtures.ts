/**
 * Test fixtures for the health prober: rows for one running instance, and a tiny ingress that
 * routes by Host header like the host's nginx and answers per host as told.
 */
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import type { Sql } from "postgres";

/** ok: 200; 503: Service Unavailable; hang: never answers; reset: drops the connection. */
export type Behaviour = "ok" | "503" | "hang" | "reset";

export interface FakeIngress {
  readonly url: string;
  /** Behaviour per Host header; unknown hosts get 404 like nginx. */
  set(host: string, behaviour: Behaviour): void;
  /** Requests seen, as `host path`. */
  readonly requests: string[];
  close(): Promise<void>;
}

export async function startIngress(): Promise<FakeIngress> {
  const behaviours = new Map<string, Behaviour>();
  const requests: string[] = [];
  const server: Server = createServer((req: IncomingMessage, res) => {
    const host = (req.headers.host ?? "").toLowerCase();
    requests.push(`${host} ${req.url ?? ""}`);
    const behaviour = behaviours.get(host);
    if (behaviour === undefined) return void res.writeHead(404).end("not found");
    if (behaviour === "hang") return;
    if (behaviour === "reset") return void req.socket.destroy();
    // A body the prober must never log or keep.
    res.writeHead(behaviour === "ok" ? 200 : 503, { "content-type": "text/plain" }).end("SECRET-BODY");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    set: (host, behaviour) => void behaviours.set(host, behaviour),
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

export interface SeededInstance {
  readonly accountId: string;
  readonly subscriptionId: string;
  readonly instanceId: string;
  readonly subdomain: string;
  readonly email: string;
}

/** A Dokku host row whose ingress is `ingressUrl` (or none). */
export async function insertHost(sql: Sql, ingressUrl: string | null): Promise<string> {
  const [host] = await sql<{ id: string }[]>`
    insert into dokku_hosts (name, ssh_url, ingress_url)
    values (${`h${randomUUID().slice(0, 8)}`}, 'ssh://dokku@127.0.0.1:22', ${ingressUrl})
    returning id`;
  return host!.id;
}

/** Account, active subscription and an instance on `hostId` with the given status. */
export async function insertInstance(sql: Sql, hostId: string, status = "running"): Promise<SeededInstance> {
  const suffix = randomUUID().replaceAll("-", "").slice(0, 10);
  const email = `h-${suffix}@example.com`;
  const [account] = await sql<{ id: string }[]>`insert into accounts (email) values (${email}) returning id`;
  const accountId = account!.id;
  const [sub] = await sql<{ id: string }[]>`
    insert into subscriptions (account_id, tier, status) values (${accountId}, 'starter', 'active') returning id`;
  const subdomain = `t${suffix}`;
  const [inst] = await sql<{ id: string }[]>`
    insert into instances (subscription_id, account_id, subdomain, host_id, status)
    values (${sub!.id}, ${accountId}, ${subdomain}, ${hostId}, ${status}) returning id`;
  return { accountId, subscriptionId: sub!.id, instanceId: inst!.id, subdomain, email };
}
