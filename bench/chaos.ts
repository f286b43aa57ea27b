/**
 * `npm run bench -- chaos [--minutes N] [--seed S] [--hosts H] [--json]`
 *
 * The chaos soak: `serve` as a child process on its embedded Postgres, against H sandbox Dokku
 * hosts in child processes, with a churn of Stripe lifecycles through the signed webhook
 * (duplicates, reordering, retried until accepted), while at seeded random moments the daemon is
 * SIGKILLed (and restarted), the database frozen and thawed, the postmaster SIGKILLed, SSH
 * connections dropped mid-command, a host made silent for a while, an app made unhealthy.
 * Then everything settles and the invariants of chaos-check.ts are checked; each violation is
 * printed. The baseline is the converge time of the first lifecycles before any fault; the
 * report gives the converge time after the last fault and its ratio to that baseline.
 *
 * Prints one JSON object, then a readable table (only the JSON with --json). Exits 1 when an
 * invariant is violated. The daemon's log is DATA_DIR/serve.log (kept with --keep).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { generateEd25519KeyPair } from "../src/drivers/dokku/keys.ts";
import { seededRandom } from "../src/drivers/dokku/sandbox/faults.ts";
import { SANDBOX_MAX_COMMAND_BYTES } from "../src/drivers/dokku/sandbox/index.ts";
import { TerminalError } from "../src/errors.ts";
import { hostNameOf } from "../src/runtime/hosts.ts";
import { openDatabase } from "../src/state/db.ts";
import { upsertHost } from "../src/state/hosts.ts";
import { type CheckInput, coverage, INVARIANTS } from "./lib/chaos-check.ts";
import { type ChaosDaemon, startChaosDaemon } from "./lib/chaos-daemon.ts";
import { FaultInjector } from "./lib/chaos-faults.ts";
import { StripeChurn } from "./lib/chaos-stripe.ts";
import { type SandboxProcess, startSandboxProcess } from "./lib/sandbox-process.ts";

const SECRET = "whsec_chaossoak";
const SETTLE_MS = 10 * 60_000;
const MAX_LIVE = 12;

interface Options {
  readonly minutes: number;
  readonly seed: number;
  readonly hosts: number;
  readonly json: boolean;
  readonly keep: boolean;
}

interface Rig {
  readonly dataDir: string;
  readonly env: Record<string, string>;
  readonly hosts: SandboxProcess[];
  readonly daemon: ChaosDaemon;
}

export async function run(argv: string[]): Promise<void> {
  const options = parseOptions(argv);
  const random = seededRandom(options.seed);
  const rig = await startRig(options);
  try {
    const churn = new StripeChurn(random, SECRET);
    const baselineSeconds = await warmUp(rig, churn);
    const soak = await soakFor(options.minutes * 60_000, rig, churn, new FaultInjector(random, rig.daemon, rig.hosts), random);
    const settled = await settle(rig, churn, soak.lastFaultAt);
    const result = {
      bench: "chaos",
      ...options,
      faults: soak.faults,
      faultsTotal: Object.values(soak.faults).reduce((a, b) => a + b, 0),
      events: { generated: churn.stats.eventsGenerated, accepted: churn.accepted.size, deliveries: churn.stats.deliveries, duplicates: churn.stats.duplicates, retried: churn.stats.retries },
      lifecycles: churn.stats.lifecycles,
      steps: churn.stats.steps,
      daemonExitsNotCausedByTheBench: rig.daemon.unexpectedExits,
      baselineConvergeSeconds: baselineSeconds,
      convergeSecondsAfterLastFault: settled.seconds,
      convergeRatio: settled.seconds === null ? null : round(settled.seconds / baselineSeconds),
      checked: settled.coverage,
      violations: settled.violations,
      violationsTotal: Object.values(settled.violations).reduce((a, list) => a + list.length, 0),
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    if (!options.json) process.stdout.write(`\n${report(result)}\n`);
    if (result.violationsTotal > 0) process.exitCode = 1;
  } finally {
    await stopRig(rig, options.keep);
  }
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { minutes: { type: "string" }, seed: { type: "string" }, hosts: { type: "string" }, json: { type: "boolean" }, keep: { type: "boolean" } },
  });
  const minutes = Number(values.minutes ?? 10);
  const seed = Number(values.seed ?? Date.now() % 1_000_000);
  const hosts = Number(values.hosts ?? 3);
  if (!(minutes > 0) || !Number.isInteger(seed) || !Number.isInteger(hosts) || hosts < 1) {
    throw new TerminalError("Usage", "bench chaos: --minutes must be > 0, --seed an integer, --hosts an integer >= 1");
  }
  return { minutes, seed, hosts, json: values.json ?? false, keep: values.keep ?? false };
}

async function startRig(options: Options): Promise<Rig> {
  const dataDir = await mkdtemp(join(tmpdir(), "mindroom-chaos-"));
  const hosts = await Promise.all(Array.from({ length: options.hosts }, () => startSandboxProcess()));
  const key = generateEd25519KeyPair();
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? "",
    DATA_DIR: dataDir,
    PORT: "0",
    LOG_LEVEL: "info",
    DOKKU_HOSTS: hosts.map((h) => h.sshUrl).join(","),
    SSH_PRIVATE_KEY: key.private,
    MASTER_KEY: "chaos-master-key-0123456789abcdef0123456789",
    STRIPE_WEBHOOK_SECRET: SECRET,
    RESYNC_INTERVAL: "15s",
    HEALTH_INTERVAL: "5s",
    RETENTION_PERIOD: "30s",
    LEADER_LEASE_TTL: "6s",
    DOKKU_COMMAND_TIMEOUT: "15s",
    MAX_CONCURRENT_RECONCILES: "8",
  };
  const daemon = startChaosDaemon(dataDir, env);
  const rig = { dataDir, env, hosts, daemon };
  await untilReady(rig, 120_000);
  const db = await openDatabase({ databaseUrl: undefined, dataDir }, () => {}, { max: 1 });
  try {
    for (const host of hosts) {
      await upsertHost(db.sql, { name: hostNameOf(host.sshUrl), sshUrl: host.sshUrl, ingressUrl: host.ingressUrl, hostKey: host.hostKey, capacity: 1000, maxCommandBytes: SANDBOX_MAX_COMMAND_BYTES });
    }
  } finally {
    await db.close();
  }
  return rig;
}

async function stopRig(rig: Rig, keep: boolean): Promise<void> {
  await rig.daemon.stop().catch(() => undefined);
  await Promise.all(rig.hosts.map((h) => h.close().catch(() => undefined)));
  if (keep) process.stderr.write(`chaos: kept ${rig.dataDir} (serve.log inside)\n`);
  else await rm(rig.dataDir, { recursive: true, force: true });
}

async function untilReady(rig: Rig, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`http://127.0.0.1:${await rig.daemon.port()}/readyz`, { signal: AbortSignal.timeout(3_000) });
      if (response.status === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(500);
  }
  throw new Error(`chaos: the daemon was not ready within ${timeoutMs / 1000} s (see ${rig.dataDir}/serve.log)`);
}

/** Three lifecycles without faults: the baseline converge time (seconds). */
async function warmUp(rig: Rig, churn: StripeChurn): Promise<number> {
  const started = Date.now();
  for (let i = 0; i < 3; i++) churn.step(MAX_LIVE);
  await churn.deliver(() => rig.daemon.port(), Date.now() + 60_000);
  const settled = await settle(rig, churn, started);
  if (settled.seconds === null) throw new Error(`chaos: the warm-up did not converge: ${JSON.stringify(settled.violations)}`);
  return settled.seconds;
}

async function soakFor(ms: number, rig: Rig, churn: StripeChurn, faults: FaultInjector, random: () => number): Promise<{ faults: Record<string, number>; lastFaultAt: number }> {
  const end = Date.now() + ms;
  let lastFaultAt = Date.now();
  const churning = (async () => {
    while (Date.now() < end) {
      churn.step(MAX_LIVE);
      await churn.deliver(() => rig.daemon.port(), end + SETTLE_MS);
      await sleep(1_000 + random() * 2_000);
    }
  })();
  while (Date.now() < end) {
    await sleep(3_000 + random() * 7_000);
    if (Date.now() >= end) break;
    await faults.injectOne();
    lastFaultAt = Date.now();
  }
  await churning;
  return { faults: faults.injected, lastFaultAt };
}

/** Polls the invariants until they all hold; the seconds since `since`, or null with the last violations. */
async function settle(rig: Rig, churn: StripeChurn, since: number): Promise<Settled> {
  const deadline = Date.now() + SETTLE_MS;
  let last: Checked = { violations: {}, coverage: {} };
  while (Date.now() < deadline) {
    last = await check(rig, churn).catch((error: unknown) => ({ violations: { check_failed: [String(error)] }, coverage: {} }));
    if (Object.values(last.violations).every((list) => list.length === 0)) return { seconds: round((Date.now() - since) / 1000), ...last };
    await sleep(5_000);
  }
  return { seconds: null, ...last };
}

interface Checked {
  readonly violations: Record<string, string[]>;
  readonly coverage: Record<string, number>;
}

interface Settled extends Checked {
  readonly seconds: number | null;
}

async function check(rig: Rig, churn: StripeChurn): Promise<Checked> {
  await untilReady(rig, 60_000);
  const db = await openDatabase({ databaseUrl: undefined, dataDir: rig.dataDir }, () => {}, { max: 2 });
  try {
    const hostApps = new Map(await Promise.all(rig.hosts.map(async (h) => [hostNameOf(h.sshUrl), await h.apps()] as const)));
    const input: CheckInput = { sql: db.sql, sim: churn.sim, accepted: churn.accepted, hostApps, planEnv: rig.env };
    const results: Record<string, string[]> = {};
    for (const [name, invariant] of Object.entries(INVARIANTS)) results[name] = await invariant(input);
    return { violations: results, coverage: await coverage(db.sql) };
  } finally {
    await db.close();
  }
}

function report(result: { faults: Record<string, number>; events: Record<string, number>; checked: Record<string, number>; lifecycles: number; baselineConvergeSeconds: number; convergeSecondsAfterLastFault: number | null; convergeRatio: number | null; violations: Record<string, string[]>; daemonExitsNotCausedByTheBench: unknown[] }): string {
  const lines = ["fault                 injected", ...Object.entries(result.faults).map(([k, v]) => `${k.padEnd(22)}${String(v).padStart(8)}`)];
  lines.push("", `events: ${Object.entries(result.events).map(([k, v]) => `${k} ${v}`).join(", ")}; lifecycles ${result.lifecycles}`);
  lines.push(`checked: ${Object.entries(result.checked).map(([k, v]) => `${k} ${v}`).join(", ")}`);
  lines.push(`daemon exits not caused by the bench: ${result.daemonExitsNotCausedByTheBench.length}`);
  lines.push(`converge after the last fault: ${result.convergeSecondsAfterLastFault ?? "never"} s (baseline without faults ${result.baselineConvergeSeconds} s, ratio ${result.convergeRatio ?? "-"})`);
  lines.push("", "invariant                        violations");
  for (const [name, list] of Object.entries(result.violations)) {
    lines.push(`${name.padEnd(33)}${String(list.length).padStart(10)}`);
    for (const violation of list) lines.push(`  - ${violation}`);
  }
  return lines.join("\n");
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
