/**
 * What `connect` sets on every connection it opens (src/state/db.ts), read back from the server.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { connect } from "../../src/state/db.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});

async function settings(options: Parameters<typeof connect>[1]): Promise<{ statement_timeout: string; synchronous_commit: string; application_name: string }> {
  const sql = connect(db.url, { max: 1, ...options });
  try {
    const [row] = await sql<{ statement_timeout: string; synchronous_commit: string; application_name: string }[]>`
      select current_setting('statement_timeout') as statement_timeout, current_setting('synchronous_commit') as synchronous_commit,
             current_setting('application_name') as application_name`;
    return row!;
  } finally {
    await sql.end();
  }
}

test("the statement timeout and the application name; commits stay synchronous", async () => {
  expect(await settings({ applicationName: "connect-test", statementTimeoutMs: 1_500 })).toEqual({ statement_timeout: "1500ms", synchronous_commit: "on", application_name: "connect-test" });
});
