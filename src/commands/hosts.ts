/** `mindroom-reconciler hosts list | add NAME SSH_URL [--capacity N] [--region R] [--ingress-url URL] | remove NAME` */
import { parseArgs } from "node:util";

import { listHosts, removeHost, upsertHost } from "../state/hosts.ts";
import { printTable, withDatabase } from "./common.ts";

const USAGE = "usage: mindroom-reconciler hosts list | add NAME ssh://dokku@HOST:22 [--capacity N] [--region R] [--ingress-url URL] | remove NAME\n";

export async function run(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case "list":
      return list();
    case "add":
      return add(rest);
    case "remove":
      return remove(rest);
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

async function list(): Promise<number> {
  return withDatabase(async ({ db }) => {
    const hosts = await listHosts(db.sql);
    const header = ["NAME", "SSH URL", "REGION", "INSTANCES", "ENABLED", "DOKKU", "KEY PINNED", "LAST SEEN"];
    const rows = hosts.map((h) => [h.name, h.sshUrl, h.region ?? "-", `${h.instances}/${h.capacity}`, String(h.enabled), h.dokkuVersion ?? "-", h.hostKey ? "yes" : "no (trust on first use)", h.lastSeenAt?.toISOString() ?? "never"]);
    printTable(header, rows);
    if (hosts.length === 0) process.stdout.write("(no hosts: serve starts a sandbox Dokku host)\n");
    return 0;
  });
}

async function add(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { capacity: { type: "string" }, region: { type: "string" }, "ingress-url": { type: "string" } },
  });
  const [name, sshUrl] = positionals;
  const capacity = values.capacity === undefined ? undefined : Number(values.capacity);
  if (!name || !sshUrl || positionals.length !== 2 || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name) || !/^ssh:\/\/[^@\s]+@[^\s]+$/.test(sshUrl) || (capacity !== undefined && !(Number.isInteger(capacity) && capacity >= 0))) {
    process.stderr.write(USAGE);
    return 2;
  }
  return withDatabase(async ({ db }) => {
    await upsertHost(db.sql, { name, sshUrl, ...(capacity !== undefined ? { capacity } : {}), region: values.region ?? null, ingressUrl: values["ingress-url"] ?? null });
    process.stdout.write(`host ${name} saved (${sshUrl}); its key is pinned on first contact\n`);
    return 0;
  });
}

async function remove(args: string[]): Promise<number> {
  const [name, ...extra] = args;
  if (!name || extra.length > 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  return withDatabase(async ({ db }) => {
    const result = await removeHost(db.sql, name);
    const message = { removed: `host ${name} removed`, missing: `no host named ${name}`, "in-use": `host ${name} still runs live instances: disable it and move or deprovision them first` }[result];
    process.stdout.write(`${message}\n`);
    return result === "removed" ? 0 : 1;
  });
}
