import { describe, expect, test } from "vitest";

import {
  BulkPsParser,
  field,
  observedFromPs,
  parseBulkJsonAppsReport,
  parseBulkPs,
  parseBulkReport,
  parseConfigExport,
  parseConfigGet,
  parseDeployedImage,
  parseDomains,
  parseJsonReport,
  parseReport,
  parseResources,
  parseStorageList,
} from "../../src/drivers/dokku/parse.ts";
import { parseVersion } from "../../src/drivers/dokku/version.ts";
import { fixture } from "./fake-runner.ts";

const VERSIONS = ["0.30", "0.34", "0.38"] as const;

describe.each(VERSIONS)("Dokku %s output", (version) => {
  test("version", () => {
    expect(parseVersion(fixture(version, "version.out")).text.startsWith(version)).toBe(true);
  });

  test("bulk ps:report, shallow: the same apps and states as the full parse, with nothing else", () => {
    const text = fixture(version, "ps-report-bulk.out");
    const full = [...parseBulkReport(text)].map(([app, report]) => observedFromPs(app, report));
    expect([...parseBulkPs(text).values()]).toEqual(full);
    expect(full.map((app) => app.app)).toEqual(["alpha-backend", "beta-frontend", "gamma-matrix", "new-app"]);
    expect(parseBulkPs(fixture("0.38", "no-apps.err")).size).toBe(0);
  });

  test("bulk ps:report streamed in chunks cut anywhere (mid-line, mid-character): the same apps and states", () => {
    const text = fixture(version, "ps-report-bulk.out");
    // A 2-byte character first, so that chunks of 1 and 3 bytes cut through it.
    const bytes = Buffer.from(`=====> café-app ps information\n       Deployed:   true\n       Running:    true\n${text}`, "utf8");
    const whole = parseBulkPs(bytes.toString("utf8"));
    expect(whole.get("café-app")).toEqual({ app: "café-app", deployed: true, running: true });
    for (const size of [1, 2, 3, 7, 64, bytes.length]) {
      const parser = new BulkPsParser();
      for (let at = 0; at < bytes.length; at += size) parser.write(bytes.subarray(at, at + size));
      expect([...parser.end()]).toEqual([...whole]);
    }
  });

  test("bulk ps:report: one block per app, paused and crashed apps are not running", () => {
    const blocks = parseBulkReport(fixture(version, "ps-report-bulk.out"));
    const observed = [...blocks].map(([app, report]) => observedFromPs(app, report));
    expect(observed).toEqual([
      { app: "alpha-backend", deployed: true, running: true },
      { app: "beta-frontend", deployed: true, running: false },
      { app: "gamma-matrix", deployed: true, running: false },
      { app: "new-app", deployed: false, running: false },
    ]);
    expect(field(blocks.get("beta-frontend")!, "Restore")).toBe("false");
    expect(field(blocks.get("gamma-matrix")!, "Status web 2")).toBe("exited (CID: 2222222222b)");
  });

  test("values containing colons and trailing padding survive", () => {
    const report = parseReport(fixture(version, "ps-report-app.out"));
    expect(field(report, "Ps computed restart policy") ?? field(report, "Ps restart policy")).toBe("on-failure:10");
    expect(field(report, "Status web 1")).toBe("running (CID: 3f1c2a9b8d7)");
  });

  test("ps:report --format json gives the same shallow state as text", () => {
    const json = parseJsonReport(fixture(version, "ps-report-app.json.out").trim());
    const text = parseReport(fixture(version, "ps-report-app.out"));
    expect(observedFromPs("alpha-backend", json)).toEqual(observedFromPs("alpha-backend", text));
    expect(field(json, "status-web.1")).toBe("running (CID: 3f1c2a9b8d7)");
  });

  test("bulk apps:report --format json is attributed by dir", () => {
    const reports = parseBulkJsonAppsReport(fixture(version, "apps-report-bulk.json.out"));
    expect([...reports.keys()]).toEqual(["alpha-backend", "beta-frontend", "gamma-matrix", "new-app"]);
    expect(parseDeployedImage(reports.get("alpha-backend")!)).toBe("nginx:1.27");
    expect(parseDeployedImage(reports.get("new-app")!)).toBeNull();
  });

  test("apps:report text gives the deployed image", () => {
    expect(parseDeployedImage(parseReport(fixture(version, "apps-report-app.out")))).toBe("ghcr.io/mindroom/backend:1.2.3");
  });

  test("domains:report (bash %-30s layout with trailing spaces)", () => {
    expect(parseDomains(parseReport(fixture(version, "domains-report.out")))).toEqual(["alpha-api.mindroom.example", "www.alpha.example"]);
  });

  test("storage:list --format json", () => {
    expect(parseStorageList(fixture(version, "storage-list.json.out"))).toEqual(["/var/lib/dokku/data/storage/alpha-backend-data:/app/storage"]);
  });

  test("resource:report", () => {
    expect(parseResources(parseReport(fixture(version, "resource-report.out")))).toEqual({ memoryMb: 512, cpus: 0.5 });
  });
});

describe("edge cases", () => {
  test("no apps at all is an empty host", () => {
    expect(parseBulkReport(fixture("0.38", "no-apps.err")).size).toBe(0);
  });
  test("storage:list of an app without mounts", () => {
    expect(parseStorageList("[]\n")).toEqual([]);
    expect(parseStorageList("")).toEqual([]);
  });
  test("resources unset", () => {
    expect(parseResources(parseReport("=====> a resource information\n       Resource _default_ limit memory:  \n"))).toBeNull();
  });
  test("memory units convert to MB", () => {
    expect(parseResources(parseReport("       Resource _default_ limit memory: 2g\n"))).toEqual({ memoryMb: 2048, cpus: 0 });
  });
  test("config:export --format json gives the environment byte-exact", () => {
    expect(parseConfigExport('{"A":"x y","B":"line1\\nline2","C":"$(id) `id`"}\n')).toEqual({ A: "x y", B: "line1\nline2", C: "$(id) `id`" });
    expect(parseConfigExport("{}\n")).toEqual({});
    expect(() => parseConfigExport('["not","an","object"]')).toThrow(/JSON object/);
    expect(() => parseConfigExport('{"A":1}')).toThrow(/non-string value for A/);
  });

  test("config:get keeps a multi-line value and strips one newline", () => {
    expect(parseConfigGet(0, "a\nb\n")).toBe("a\nb");
    expect(parseConfigGet(1, "")).toBeNull();
  });
  test("json report with legacy duplicate keys", () => {
    expect(field(parseJsonReport('{"deployed":"true","ps-can-scale":"true","can-scale":"true"}'), "can-scale")).toBe("true");
  });
});
