import { loadConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { startDaemon } from "../main.ts";

/** `mindroom-reconciler serve` (also `npm start`): runs until SIGINT or SIGTERM. */
export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler serve (configuration comes from the environment)\n");
    return 2;
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const daemon = await startDaemon(config, logger);
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });
  logger.info({ signal }, "shutting down");
  await daemon.stop();
  logger.info("stopped");
  return 0;
}
