/**
 * The prober against the sandbox Dokku host: apps created and deployed over SSH by the real
 * driver, probed through the sandbox's Host-routing ingress, as a real host would be.
 */
import { Registry } from "prom-client";
import { afterAll, beforeAll, expect, test } from "vitest";

import { createDokkuDriver, type DokkuDriver } from "../../src/drivers/dokku/driver.ts";
import { generateEd25519KeyPair } from "../../src/drivers/dokku/keys.ts";
import { type Sandbox, startSandbox } from "../../src/drivers/dokku/sandbox/index.ts";
import { COMPONENTS, type HostRef } from "../../src/reconciler/types.ts";
import { defaultDomainFor, HealthProber } from "../../src/sources/health.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { insertHost, insertInstance, type SeededInstance } from "./fixtures.ts";

const domainFor = defaultDomainFor("mindroom.localhost");
const silent = { info: () => {}, warn: () => {}, error: () => {} };

let db: TestDatabase;
let sb: Sandbox;
let driver: DokkuDriver;
let inst: SeededInstance;

beforeAll(async () => {
  db = await createTestDatabase();
  sb = await startSandbox({ authorizedKeys: null });
  driver = createDokkuDriver({ privateKey: generateEd25519KeyPair().private, registry: new Registry(), commandTimeoutMs: 15_000 });
  const host: HostRef = { id: "sandbox", name: "sandbox", sshUrl: sb.sshUrl, hostKey: sb.hostKey };
  inst = await insertInstance(db.sql, await insertHost(db.sql, sb.ingressUrl));
  for (const component of COMPONENTS) {
    const app = `${inst.subdomain}-${component}`;
    await driver.apply(host, { kind: "createApp", app });
    await driver.apply(host, { kind: "setDomains", app, domains: [domainFor(inst.subdomain, component)] });
    await driver.apply(host, { kind: "deployImage", app, image: "nginx:1.27" });
  }
});
afterAll(async () => {
  await driver?.close();
  await sb?.close();
  await db?.drop();
});

test("a deployed instance is healthy through the ingress; an unhealthy backend makes it critical", async () => {
  const unhealthy: string[][] = [];
  const prober = new HealthProber({
    sql: db.sql,
    registry: new Registry(),
    domainFor,
    onUnhealthy: (_sub, _id, components) => void unhealthy.push([...components]),
    logger: silent,
    timeoutMs: 5_000,
  });
  const [first] = await prober.probeOnce(inst.instanceId);
  expect(first?.results.map((r) => [r.component, r.statusCode])).toEqual([
    ["matrix", 200],
    ["backend", 200],
    ["frontend", 200],
  ]);
  expect(first?.health).toBe("healthy");

  sb.control.setUnhealthy(`${inst.subdomain}-backend`, true);
  const [second] = await prober.probeOnce(inst.instanceId);
  expect(second?.health).toBe("critical");
  expect(second?.results.find((r) => r.component === "backend")).toMatchObject({ ok: false, statusCode: 503, error: "HTTP 503" });

  sb.control.setUnhealthy(`${inst.subdomain}-backend`, false);
  await sb.control.crashApp(`${inst.subdomain}-frontend`);
  const [third] = await prober.probeOnce(inst.instanceId);
  expect(third?.health, "a crashed frontend answers 502 at the ingress").toBe("degraded");
  expect(third?.results.find((r) => r.component === "frontend")?.statusCode).toBe(502);
  const [row] = await db.sql<{ health_status: string }[]>`select health_status from instances where id = ${inst.instanceId}`;
  expect(row?.health_status).toBe("degraded");
  expect(unhealthy).toEqual([]);
});
