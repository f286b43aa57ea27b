/**
 * A load generator for GET endpoints, in a process of its own (forked by bench/api.ts): open loop
 * at a fixed rate (open-loop.ts), undici's Pool for the connections, each request's headers taken
 * in turn from `headers` (e.g. several API keys). A request unanswered after 10 s counts as an
 * error, and so does any status but `expect`.
 */
import { Pool } from "undici";

import { serveOverIpc } from "./child-process.ts";
import { type LoadResult, openLoop } from "./open-loop.ts";

export interface HttpLoadRequest {
  readonly url: string;
  readonly rate: number;
  readonly seconds: number;
  readonly expect: number;
  readonly headers: readonly Record<string, string>[];
}

const TIMEOUT_MS = 10_000;
const CONNECTIONS = 128;

export async function runHttpLoad(request: HttpLoadRequest): Promise<LoadResult> {
  const url = new URL(request.url);
  const pool = new Pool(url.origin, { connections: CONNECTIONS, pipelining: 1, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  const path = `${url.pathname}${url.search}`;
  const choices = request.headers.length > 0 ? request.headers : [{}];
  try {
    return await openLoop(request.rate, request.seconds, async (i) => {
      const res = await pool.request({ path, method: "GET", headers: choices[i % choices.length]! });
      await res.body.dump();
      return res.statusCode === request.expect;
    });
  } finally {
    await pool.close();
  }
}

serveOverIpc(runHttpLoad);
