/** `mindroom-reconciler hosts list | add NAME SSH_URL [--capacity N] [--region R] [--ingress-url URL] | remove NAME` */
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";

import { sshUrlProblem } from "../config.ts";
import { needsSandbox, SANDBOX_HOST_NAME } from "../runtime/hosts.ts";
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
  const problem = addProblem(name, sshUrl, positionals.length, values);
  if (problem) {
    process.stderr.write(`mindroom-reconciler hosts add: ${problem}\n`);
    return 2;
  }
  const capacity = values.capacity === undefined ? undefined : Number(values.capacity);
  return withDatabase(async ({ db, config }) => {
    const wasSandbox = await needsSandbox(db.sql, config);
    await upsertHost(db.sql, { name: name!, sshUrl: sshUrl!, ...(capacity !== undefined ? { capacity } : {}), region: values.region ?? null, ingressUrl: values["ingress-url"] ?? null });
    process.stdout.write(`host ${name} saved (${sshUrl}); its key is pinned on first contact\n`);
    if (wasSandbox && name !== SANDBOX_HOST_NAME) process.stdout.write(leavingSandbox(config.dataDir));
    return 0;
  });
}

/** What is wrong with `hosts add` arguments, in one line, or undefined. */
function addProblem(name: string | undefined, sshUrl: string | undefined, count: number, values: { capacity?: string | undefined; "ingress-url"?: string | undefined }): string | undefined {
  if (!name || !sshUrl || count !== 2) return "expected NAME and SSH_URL";
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name)) return `bad host name ${JSON.stringify(name)}: letters, digits, ".", "_", "-", at most 63`;
  const urlProblem = sshUrlProblem(sshUrl);
  if (urlProblem) return urlProblem;
  if (values.capacity !== undefined && !/^\d{1,6}$/.test(values.capacity)) return `--capacity must be a whole number (got ${JSON.stringify(values.capacity)})`;
  const ingress = values["ingress-url"];
  if (ingress !== undefined && !URL.canParse(ingress)) return `--ingress-url must be an http(s):// URL (got ${JSON.stringify(ingress)})`;
  if (ingress !== undefined && !/^https?:$/.test(new URL(ingress).protocol)) return `--ingress-url must be an http(s):// URL (got ${JSON.stringify(ingress)})`;
  return undefined;
}

function leavingSandbox(dataDir: string): string {
  const dir = resolve(dataDir);
  return [
    "note: this leaves sandbox mode. The next `serve` drives real hosts and no longer starts the sandbox or generates keys; it needs:",
    `  SSH_PRIVATE_KEY or SSH_PRIVATE_KEY_FILE: the dokku user's key (the sandbox's generated one is ${join(dir, "ssh_client_key")}; its public half must be in the host's dokku authorized keys)`,
    `  MASTER_KEY: keep the generated one (${join(dir, "master.key")}), or every instance's derived secrets change`,
    "",
  ].join("\n");
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
