import { defineConfig } from "vitest/config";

// One embedded Postgres for the whole run (test/global-setup.ts); each test file clones its own
// database from a migrated template, so files run in parallel without sharing rows.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: process.env.CI ? ["default", ["json", { outputFile: ".ci/vitest-report.json" }]] : ["default"],
  },
});
