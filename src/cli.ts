/**
 * The `mindroom-reconciler` command line. Each command lives in its own module, loaded only when
 * run, and returns its exit status. Exit 2 means bad usage or configuration (one clear line on
 * stderr, no stack trace).
 */
import { ConfigError } from "./config.ts";
import { TerminalError, UnavailableError } from "./errors.ts";

type CommandModule = { run(argv: string[]): Promise<number> };

interface Command {
  readonly summary: string;
  readonly load: () => Promise<CommandModule>;
}

/**
 * The benchmarks live outside src/ and are not part of the build (dist/): a specifier the compiler
 * does not follow, run from the sources only (src/bin.mjs sends `bench` there).
 */
const BENCH: string = "../bench/index.ts";

const COMMANDS: Record<string, Command> = {
  serve: { summary: "run the controller daemon (webhook, API, metrics, reconcilers)", load: () => import("./commands/serve.ts") },
  migrate: { summary: "apply pending database migrations", load: () => import("./commands/migrate.ts") },
  seed: { summary: "load the demo seed data (idempotent)", load: () => import("./commands/seed.ts") },
  plan: { summary: "plan [--instance ID]: print what a pass would change (exit 0 none, 1 changes, 2 error)", load: () => import("./commands/plan.ts") },
  status: { summary: "print every instance: phase desired/observed, health, host, why not converged", load: () => import("./commands/status.ts") },
  reconcile: { summary: "reconcile ID: run one pass for an instance or subscription now", load: () => import("./commands/reconcile.ts") },
  hosts: { summary: "hosts list | add NAME SSH_URL [--capacity N] [--region R] | remove NAME", load: () => import("./commands/hosts.ts") },
  sandbox: { summary: "sandbox [--port N] [--dokku-version V] [--authorized-keys FILE]: a local Dokku host", load: () => import("./drivers/dokku/sandbox/cli.ts") },
  stripe: { summary: "stripe sync [--customer ID] | stripe send TRIGGER [--customer ID] [--tier T] [--url URL]", load: () => import("./commands/stripe.ts") },
  backup: { summary: "backup ID [--component C] [--json]: back up an instance's storage now and wait", load: async () => (await import("./commands/backups.ts")).backup },
  restore: { summary: "restore BACKUP_ID [--instance ID] [--force-cross-account] [--json]: replace a component's data", load: async () => (await import("./commands/backups.ts")).restore },
  import: { summary: "import FILE.tar.gz --instance ID [--component backend|matrix]: bring self-hosted data in", load: async () => (await import("./commands/backups.ts")).importArchive },
  backups: { summary: "backups list [ID] [--json] | download BACKUP_ID --out FILE | url BACKUP_ID [--expires 15m] | verify [BACKUP_ID]", load: () => import("./commands/backups.ts") },
  keys: { summary: "keys create --account ID|EMAIL --name N --scopes a,b [--expires 90d] [--json] | list --account ID|EMAIL | revoke KEY_ID", load: () => import("./commands/keys.ts") },
  doctor: { summary: "check the database, the hosts and Stripe, and say what is wrong (exit 0 ok, 1 problems)", load: () => import("./commands/doctor.ts") },
  bench: { summary: "bench api|backup|chaos|scale|ssh|startup|webhook: run a benchmark, print JSON and a table", load: () => import(BENCH) as Promise<CommandModule> },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`);
  return [
    "usage: mindroom-reconciler <command> [options]",
    "",
    "MindRoom platform controller: keeps Stripe, Postgres and the Dokku hosts in agreement.",
    "",
    "commands:",
    ...lines,
    "",
    "Configuration comes from environment variables; see README.md.",
  ].join("\n");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`mindroom-reconciler: unknown command "${name}"; run mindroom-reconciler --help\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    process.stdout.write(`usage: mindroom-reconciler ${name}: ${command.summary}\nConfiguration comes from environment variables; see README.md.\n`);
    return 0;
  }
  try {
    const module = await command.load();
    return await module.run(rest);
  } catch (error) {
    return reportFatal(error, name);
  }
}

/** Expected failures print one line; anything else keeps its stack for the operator. */
function reportFatal(error: unknown, command: string): number {
  if (isUsageError(error)) {
    process.stderr.write(`mindroom-reconciler ${command}: ${error.message}; run mindroom-reconciler ${command} --help\n`);
    return 2;
  }
  if (error instanceof ConfigError) {
    process.stderr.write(`configuration error: ${error.message}\n`);
    return 2;
  }
  if (error instanceof UnavailableError) {
    process.stderr.write(`mindroom-reconciler ${command}: ${error.message}\n`);
    return 1;
  }
  if (error instanceof TerminalError) {
    process.stderr.write(`error: ${error.message}\n`);
    return 2;
  }
  if (isDatabaseUnavailable(error)) {
    process.stderr.write(`mindroom-reconciler ${command}: the database is not accepting connections right now (starting, recovering or down: ${(error as Error).message}); retry in a few seconds\n`);
    return 1;
  }
  process.stderr.write(`error: ${describeChain(error)}\n`);
  return 1;
}

/** Postgres starting up or recovering (57P03), or nothing listening: transient, worth one line. */
function isDatabaseUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "57P03" || code === "ECONNREFUSED" || code === "CONNECT_TIMEOUT";
}

/** node:util parseArgs rejects unknown options and missing values with these codes. */
function isUsageError(error: unknown): error is Error {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_");
}

/** The message of an error and of each cause, most specific last, with the outermost stack. */
function describeChain(error: unknown): string {
  const parts: string[] = [];
  for (let current: unknown = error; current !== undefined; current = (current as Error).cause) {
    parts.push(current instanceof Error ? current.message : String(current));
    if (!(current instanceof Error) || parts.length > 5) break;
  }
  const stack = error instanceof Error ? (error.stack?.split("\n").slice(1).join("\n") ?? "") : "";
  return `${parts.join(": ")}\n${stack}`;
}
