/** Wiring shared by the one-shot commands: configuration, a logger on stderr, the database. */
import { type Config, loadConfig } from "../config.ts";
import { createLogger, type Logger } from "../logger.ts";
import { type Database, openDatabase } from "../state/db.ts";

export interface CommandContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly db: Database;
}

/** Runs `fn` with an open database and always closes it (stopping an embedded server we own). */
export async function withDatabase<T>(fn: (ctx: CommandContext) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel, process.stderr);
  // Attaching to the daemon's embedded Postgres is routine for a guest: not worth a line at info.
  const db = await openDatabase(config, (message) => logger.debug(message), { max: 4 });
  try {
    return await fn({ config, logger, db });
  } finally {
    await db.close();
  }
}

/** Prints rows as aligned columns under `header` (two spaces between columns). */
export function printTable(header: readonly string[], rows: readonly (readonly string[])[]): void {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((cells) => (cells[column] ?? "").length)));
  for (const cells of [header, ...rows]) {
    process.stdout.write(`${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  ").trimEnd()}\n`);
  }
}
