/**
 * The HTTP surface: `/healthz`, `/readyz`, `/metrics`, the Stripe webhook and the API. A plain
 * node:http server with an exact-match route table; handlers own their bodies (the webhook needs
 * the raw bytes, so nothing here parses them).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import type { Registry } from "prom-client";

export type Handler = (req: IncomingMessage, res: ServerResponse) => Promise<void> | void;

/** Keys are `METHOD /path`, or `METHOD /prefix/*` for every path under a prefix. */
export type Routes = Record<string, Handler>;

export interface HealthChecks {
  /** Resolves with a reason when not ready, undefined when ready. Must not throw. */
  readonly notReadyReason: () => Promise<string | undefined>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

export function baseRoutes(registry: Registry, health: HealthChecks): Routes {
  return {
    "GET /healthz": (_req, res) => sendJson(res, 200, { status: "alive" }),
    "GET /readyz": async (_req, res) => {
      const reason = await health.notReadyReason();
      sendJson(res, reason ? 503 : 200, reason ? { status: "not ready", reason } : { status: "ready" });
    },
    "GET /metrics": async (_req, res) => {
      const body = await registry.metrics();
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(body);
    },
  };
}

export function createHttpServer(routes: Routes, onError: (error: unknown) => void): Server {
  return createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const handler = routes[`${req.method} ${path}`] ?? prefixHandler(routes, req.method ?? "", path);
    if (!handler) {
      const known = Object.keys(routes).some((key) => key.endsWith(` ${path}`));
      sendJson(res, known ? 405 : 404, { error: known ? "method not allowed" : "not found" });
      return;
    }
    Promise.resolve(handler(req, res)).catch((error: unknown) => {
      onError(error);
      if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
      else res.destroy();
    });
  });
}

function prefixHandler(routes: Routes, method: string, path: string): Handler | undefined {
  for (const [key, handler] of Object.entries(routes)) {
    if (key.endsWith("/*") && key.startsWith(`${method} `) && path.startsWith(key.slice(method.length + 1, -1))) return handler;
  }
  return undefined;
}

/** Binds and answers the address actually bound (port 0 picks a free port). */
export async function listen(server: Server, port: number, host = "0.0.0.0"): Promise<{ address: string; port: number }> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { address: address.address, port: address.port };
}

export async function closeServer(server: Server): Promise<void> {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
