/** Dokku hosts (`dokku_hosts`): the operator's commands, host-key pinning, and placement input. */
import type { Sql } from "postgres";

import type { HostRef } from "../reconciler/types.ts";

export interface HostRow extends HostRef {
  readonly region: string | null;
  readonly capacity: number;
  readonly enabled: boolean;
  readonly dokkuVersion: string | null;
  readonly ingressUrl: string | null;
  readonly instances: number;
  readonly lastSeenAt: Date | null;
}

export async function listHosts(sql: Sql): Promise<HostRow[]> {
  const rows = await sql<
    { id: string; name: string; ssh_url: string; host_key: string | null; max_command_bytes: number; region: string | null; capacity: number; enabled: boolean; dokku_version: string | null; ingress_url: string | null; instances: number; last_seen_at: Date | null }[]
  >`
    select h.id, h.name, h.ssh_url, h.host_key, h.max_command_bytes, h.region, h.capacity, h.enabled, h.dokku_version, h.ingress_url, h.last_seen_at,
           (select count(*)::int from public.instances i where i.host_id = h.id and i.status <> 'deprovisioned') as instances
    from public.dokku_hosts h order by h.name`;
  return rows.map((row) => ({
    id: row.id,
    name: row.name,
    sshUrl: row.ssh_url,
    hostKey: row.host_key,
    maxCommandBytes: row.max_command_bytes,
    region: row.region,
    capacity: row.capacity,
    enabled: row.enabled,
    dokkuVersion: row.dokku_version,
    ingressUrl: row.ingress_url,
    instances: row.instances,
    lastSeenAt: row.last_seen_at,
  }));
}

export interface HostInput {
  readonly name: string;
  readonly sshUrl: string;
  readonly capacity?: number;
  readonly region?: string | null;
  readonly ingressUrl?: string | null;
  readonly hostKey?: string | null;
  /** The host's command-line limit (see HostRef); default 130000, real Dokku behind OpenSSH. */
  readonly maxCommandBytes?: number;
}

/** Adds a host, or updates its URL/capacity/region when the name exists. Keeps a pinned key unless a new one is given. */
export async function upsertHost(sql: Sql, host: HostInput): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.dokku_hosts (name, ssh_url, capacity, region, ingress_url, host_key, max_command_bytes)
    values (${host.name}, ${host.sshUrl}, ${host.capacity ?? 100}, ${host.region ?? null}, ${host.ingressUrl ?? null}, ${host.hostKey ?? null},
            coalesce(${host.maxCommandBytes ?? null}::int, 130000))
    on conflict (name) do update set
      ssh_url = excluded.ssh_url,
      max_command_bytes = coalesce(${host.maxCommandBytes ?? null}::int, public.dokku_hosts.max_command_bytes),
      capacity = coalesce(${host.capacity ?? null}::int, public.dokku_hosts.capacity),
      region = coalesce(excluded.region, public.dokku_hosts.region),
      ingress_url = coalesce(excluded.ingress_url, public.dokku_hosts.ingress_url),
      host_key = coalesce(excluded.host_key, public.dokku_hosts.host_key),
      enabled = true
    returning id`;
  return row!.id;
}

/**
 * The sandbox host's row, written by the process that just started that sandbox: its URLs and
 * key change on every start (fresh loopback ports), so they replace the stored ones.
 */
export async function registerSandboxHost(sql: Sql, host: HostInput & { readonly hostKey: string; readonly ingressUrl: string }): Promise<void> {
  await upsertHost(sql, host);
  await sql`update public.dokku_hosts set host_key = ${host.hostKey}, ingress_url = ${host.ingressUrl}, ssh_url = ${host.sshUrl} where name = ${host.name}`;
}

/** Removes a host that runs nothing; a host with live instances is refused (drain it first). */
export async function removeHost(sql: Sql, name: string): Promise<"removed" | "missing" | "in-use"> {
  return sql.begin(async (tx) => {
    const [host] = await tx<{ id: string; live: number }[]>`
      select h.id, (select count(*)::int from public.instances i where i.host_id = h.id and i.status <> 'deprovisioned') as live
      from public.dokku_hosts h where h.name = ${name} for update`;
    if (!host) return "missing";
    if (host.live > 0) return "in-use";
    await tx`update public.instances set host_id = null where host_id = ${host.id}`;
    await tx`delete from public.dokku_hosts where id = ${host.id}`;
    return "removed";
  });
}

/** Trust on first use: stores a learned host key only when none is pinned yet. */
export async function pinHostKey(sql: Sql, hostId: string, hostKey: string): Promise<void> {
  await sql`update public.dokku_hosts set host_key = ${hostKey} where id = ${hostId} and host_key is null`;
}

export async function markHostSeen(sql: Sql, hostId: string, dokkuVersion: string): Promise<void> {
  await sql`update public.dokku_hosts set last_seen_at = now(), dokku_version = ${dokkuVersion} where id = ${hostId}`;
}
