/**
 * The scale benchmark's measured process (started by scale-process.ts, compiled to JavaScript):
 * runs the one `ScaleRequest` it receives and answers with its result (child-process.ts). Asked to
 * stop (SIGTERM) or left by its parent, it aborts the run, which cleans up its sandbox hosts.
 */
import { serveOverIpc } from "./child-process.ts";
import { type RunOptions, type RunResult, runScaleHere } from "./scale-run.ts";

export interface ScaleRequest {
  readonly databaseUrl: string;
  readonly options: Omit<RunOptions, "signal">;
}

serveOverIpc<ScaleRequest, RunResult>((request, signal) => runScaleHere(request.databaseUrl, { ...request.options, signal }));
