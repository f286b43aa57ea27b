/**
 * The scale benchmark's measured process (started by scale-process.ts, compiled to JavaScript):
 * receives one `ScaleRequest`, runs it, sends back `{ result }` or `{ error }` and exits. It stops
 * early, cleaning up its sandbox hosts, when the parent asks (SIGTERM) or goes away.
 */
import { type RunOptions, type RunResult, runScaleHere } from "./scale-run.ts";

export interface ScaleRequest {
  readonly databaseUrl: string;
  readonly options: Omit<RunOptions, "signal">;
}

export type ScaleReply = { readonly result: RunResult } | { readonly error: string };

const stop = new AbortController();
const abort = (): void => stop.abort(new Error("interrupted"));
process.once("SIGTERM", abort);
process.once("SIGINT", abort);
process.once("disconnect", abort);

process.once("message", (request: ScaleRequest) => {
  void runScaleHere(request.databaseUrl, { ...request.options, signal: stop.signal }).then(
    (result) => reply({ result }),
    (error: unknown) => reply({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
  );
});

function reply(message: ScaleReply): void {
  if (!process.connected) return void (process.exitCode = 1);
  process.send!(message, () => process.disconnect());
}
