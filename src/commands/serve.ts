import { loadConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { startDaemon } from "../main.ts";
import { DataDirBusyError } from "../state/data-dir-lock.ts";

/** `mindroom-reconciler serve` (also `npm start`): runs until SIGINT or SIGTERM. */
export async function run(argv: string[]): Promise<number> {
  if (argv.length > 0) {
    process.stderr.write("usage: mindroom-reconciler serve (configuration comes from the environment)\n");
    return 2;
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  let daemon;
  try {
    daemon = await startDaemon(config, logger);
  } catch (error) {
    if (!(error instanceof DataDirBusyError)) throw error;
    process.stderr.write(`mindroom-reconciler serve: ${error.message}\n`);
    return 2;
  }
  const ending = await new Promise<{ signal: NodeJS.Signals } | { fatal: string }>((resolve) => {
    process.once("SIGINT", () => resolve({ signal: "SIGINT" }));
    process.once("SIGTERM", () => resolve({ signal: "SIGTERM" }));
    void daemon.fatal.then((fatal) => resolve({ fatal }));
  });
  if ("fatal" in ending) {
    logger.fatal({ reason: ending.fatal }, "cannot continue: shutting down with exit status 1 so the service manager restarts the daemon");
    // Also one line on stderr, written at once: the JSON log may still be buffered when the process exits.
    process.stderr.write(`mindroom-reconciler serve: ${ending.fatal}; exiting with status 1\n`);
  }
  else logger.info({ signal: ending.signal }, "shutting down");
  await daemon.stop();
  logger.info("stopped");
  return "fatal" in ending ? 1 : 0;
}
