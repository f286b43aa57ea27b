import { seed } from "../state/db.ts";
import { migrate } from "../state/migrate.ts";
import { withDatabase } from "./common.ts";

/** `mindroom-reconciler seed`: migrates, then loads the demo data (idempotent). */
export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler seed\n");
    return 2;
  }
  return withDatabase(async ({ db }) => {
    await migrate(db.sql);
    await seed(db.sql);
    process.stdout.write("seed loaded: four demo accounts (free, starter, professional, enterprise)\n");
    return 0;
  });
}
