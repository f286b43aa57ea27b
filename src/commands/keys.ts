/**
 * `mindroom-reconciler keys create --account ID|EMAIL --name N --scopes a,b [--expires 90d] [--json]
 * | list --account ID|EMAIL [--json] | revoke KEY_ID`: API keys for the `/v1` API. A new key is
 * printed exactly once (only its sha256 is stored); `--json` prints `{"id","key","prefix","scopes"}`
 * alone, for scripts.
 */
import { parseArgs } from "node:util";

import ms from "ms";

import { sqlState } from "../errors.ts";
import { createApiKey, findAccount, listApiKeys, revokeApiKey } from "../state/api-keys.ts";
import { printTable, withDatabase } from "./common.ts";

const USAGE = "usage: mindroom-reconciler keys create --account ID|EMAIL --name NAME --scopes a,b [--expires 90d] [--json] | list --account ID|EMAIL [--json] | revoke KEY_ID\n";
const SCOPES = "instances:read, instances:write, backups:read, backups:write, usage:read, support:write, read (every :read scope)";

export async function run(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case "create":
      return create(rest);
    case "list":
      return list(rest);
    case "revoke":
      return revoke(rest);
    default:
      process.stderr.write(USAGE);
      return 2;
  }
}

function fail(verb: string, message: string, status = 2): number {
  process.stderr.write(`mindroom-reconciler keys ${verb}: ${message}\n`);
  return status;
}

async function create(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { account: { type: "string" }, name: { type: "string" }, scopes: { type: "string" }, expires: { type: "string" }, json: { type: "boolean" } } });
  if (!values.account || !values.name || !values.scopes) return fail("create", "--account, --name and --scopes are required");
  const scopes = values.scopes.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (scopes.length === 0) return fail("create", `--scopes needs at least one of ${SCOPES}`);
  const ttl = values.expires === undefined ? undefined : (ms(values.expires as ms.StringValue) as number | undefined);
  if (values.expires !== undefined && !(ttl !== undefined && Number.isFinite(ttl) && ttl > 0)) return fail("create", `--expires must be a duration such as 90d or 12h (got ${JSON.stringify(values.expires)})`);
  const { account, name, json } = values;
  return withDatabase(async ({ db }) => {
    const owner = await findAccount(db.sql, account);
    if (!owner) return fail("create", `no account ${JSON.stringify(account)} (give its id or email)`, 1);
    try {
      const created = await createApiKey(db.sql, owner.id, name, scopes, ttl === undefined ? null : new Date(Date.now() + ttl));
      const out = { id: created.id, key: created.key, prefix: created.prefix, scopes: created.scopes };
      if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
      else process.stdout.write(`API key ${created.id} for ${owner.email} (scopes ${created.scopes.join(", ")}):\n\n  ${created.key}\n\nIt is shown only this once: store it now. Use it as \`Authorization: Bearer ${created.prefix}...\`.\n`);
      return 0;
    } catch (error) {
      const state = sqlState(error);
      if (state === "22023") return fail("create", `${(error as Error).message} (scopes: ${SCOPES})`);
      if (state === "PT409" || state === "23502") return fail("create", (error as Error).message, 1);
      throw error;
    }
  });
}

async function list(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { account: { type: "string" }, json: { type: "boolean" } } });
  if (!values.account) return fail("list", "--account ID|EMAIL is required");
  const account = values.account;
  return withDatabase(async ({ db }) => {
    const owner = await findAccount(db.sql, account);
    if (!owner) return fail("list", `no account ${JSON.stringify(account)} (give its id or email)`, 1);
    const keys = await listApiKeys(db.sql, owner.id);
    if (values.json) {
      process.stdout.write(`${JSON.stringify(keys)}\n`);
      return 0;
    }
    const rows = keys.map((k) => [k.id, k.name, `${k.prefix}...`, k.scopes.join(","), k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : k.expiresAt && k.expiresAt <= new Date() ? "expired" : "active", k.expiresAt?.toISOString() ?? "never", k.lastUsedAt?.toISOString() ?? "never"]);
    printTable(["ID", "NAME", "PREFIX", "SCOPES", "STATE", "EXPIRES", "LAST USED"], rows);
    return 0;
  });
}

async function revoke(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true, options: {} });
  const [keyId] = positionals;
  if (!keyId || positionals.length !== 1) return fail("revoke", "expected one KEY_ID (see `keys list`)");
  return withDatabase(async ({ db }) => {
    try {
      const revoked = await revokeApiKey(db.sql, keyId, "operator:cli");
      process.stdout.write(revoked ? `API key ${keyId} revoked\n` : `API key ${keyId} was already revoked\n`);
      return 0;
    } catch (error) {
      if (sqlState(error) === "P0002" || /unknown API key/.test((error as Error).message)) return fail("revoke", `unknown API key ${keyId}`, 1);
      throw error;
    }
  });
}
