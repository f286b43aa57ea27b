/**
 * Issue 11 acceptance through `npm start` itself (a `serve` child on a fresh DATA_DIR, zero
 * configuration but SMTP_URL): the four seed welcome emails arrive once each, a restart sends none
 * again, and `stripe send customer.subscription.created` brings exactly one more.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { startSmtpServer, type TestSmtpServer } from "../notify/smtp-server.ts";
import { eventually } from "./harness.ts";
import { type ServeProcess, startServe } from "./serve-process.ts";

let smtp: TestSmtpServer;
let dataDir: string;
let env: Record<string, string>;
const serves: ServeProcess[] = [];

beforeAll(async () => {
  smtp = await startSmtpServer({ kind: "accept" }, { auth: false, starttls: false });
  dataDir = mkdtempSync(join(tmpdir(), "mindroom-email-serve-"));
  env = { DATA_DIR: dataDir, SMTP_URL: smtp.url, SMTP_FROM: "MindRoom <noreply@mindroom.test>", HEALTH_INTERVAL: "1h" };
});

afterAll(async () => {
  for (const serve of serves) {
    serve.kill("SIGTERM");
    await serve.exited;
  }
  await smtp?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

function welcomes(): string[] {
  return smtp.received.filter((m) => m.subject === "Your MindRoom instance is ready").map((m) => m.to).sort();
}

async function stop(serve: ServeProcess): Promise<void> {
  serve.kill("SIGTERM");
  await serve.exited;
}

describe("email through npm start", () => {
  test("four seed welcomes once each; none again after a restart; one for a new Stripe customer", async () => {
    const first = startServe(env);
    serves.push(first);
    await eventually("four welcome emails", () => welcomes().length >= 4, 150_000);
    expect(welcomes()).toEqual(["demo-enterprise@example.com", "demo-free@example.com", "demo-pro@example.com", "demo-starter@example.com"]);
    await stop(first);

    const second = startServe(env);
    serves.push(second);
    const port = await second.port;
    // Longer than one outbox poll (10 s) after the daemon is up: anything still queued would go.
    await eventually("the restarted daemon leads", async () => (await second.leading()) === true, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 12_000));
    expect(welcomes(), "a restart sends nothing again").toHaveLength(4);

    const sent = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, ["src/bin.mjs", "stripe", "send", "customer.subscription.created", "--tier", "starter", "--url", `http://127.0.0.1:${port}/webhooks/stripe`], { env: { PATH: process.env.PATH ?? "", ...env, LOG_LEVEL: "warn" }, encoding: "utf8", timeout: 60_000 }, (error, stdout) =>
        resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout }),
      );
    });
    expect(sent.code, sent.stdout).toBe(0);
    await eventually("a fifth welcome", () => welcomes().length >= 5, 120_000);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(welcomes()).toHaveLength(5);
    expect(smtp.received.every((m) => m.messageId?.endsWith("@mindroom.localhost>"))).toBe(true);
    await stop(second);
  }, 360_000);
});
