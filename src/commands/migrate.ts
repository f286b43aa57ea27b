import { migrate } from "../state/migrate.ts";
import { withDatabase } from "./common.ts";

/** `mindroom-reconciler migrate`: applies pending migrations; safe to run concurrently. */
export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler migrate\n");
    return 2;
  }
  return withDatabase(async ({ db }) => {
    const result = await migrate(db.sql);
    const what = result.applied.length === 0 ? "nothing to apply" : `applied ${result.applied.join(", ")}`;
    process.stdout.write(`${what}; database at migration ${result.current}\n`);
    return 0;
  });
}
