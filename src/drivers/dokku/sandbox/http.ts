/**
 * Real HTTP for deployed apps: one `http.Server` per running app (unless the app was seeded with
 * `serveHttp: false`, or the host started with `serveHttp: false`), and an nginx-like ingress that routes by `Host` to the app whose domains
 * contain it (404 unknown host, 502 app not running). Listener state follows app state through
 * `sync(app)`, called after every change.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import type { AppRuntime } from "./context.ts";
import type { AppState, Store } from "./state.ts";
import { isRunning } from "./state.ts";

/** Health path from the component suffix of the app name. */
export function healthPath(app: string): string {
  if (app.endsWith("-backend")) return "/api/health";
  if (app.endsWith("-matrix")) return "/_matrix/client/versions";
  return "/";
}

/** The simulated application: health answers per component, 503 everywhere when unhealthy. */
export function appHandler(app: AppState, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? "/").split("?")[0];
  if (app.unhealthy) {
    res.writeHead(503, { "content-type": "application/json" }).end('{"status":"unhealthy"}');
    return;
  }
  if (app.name.endsWith("-backend") && path === "/api/health") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"status":"ok"}');
  } else if (app.name.endsWith("-matrix") && path === "/_matrix/client/versions") {
    res.writeHead(200, { "content-type": "application/json" }).end('{"versions":["v1.11"]}');
  } else if (path === "/" || path === healthPath(app.name)) {
    res.writeHead(200, { "content-type": "text/html" }).end(`<!doctype html><title>${app.name}</title><h1>${app.name}</h1>`);
  } else {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  }
}

function listen(server: Server, host: string, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve((server.address() as AddressInfo).port));
  });
}

function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

export class HttpRuntime implements AppRuntime {
  private readonly servers = new Map<string, { server: Server; port: number }>();
  private readonly pending = new Map<string, Promise<void>>();
  private ingress: Server | undefined;
  ingressPort = 0;

  constructor(
    private readonly store: Store,
    private readonly bind: string,
    /** False: no app gets a listener of its own; the ingress still answers for running apps. */
    private readonly serveApps = true,
  ) {}

  async start(): Promise<void> {
    this.ingress = createServer((req, res) => this.route(req, res));
    this.ingressPort = await listen(this.ingress, this.bind);
    await Promise.all(this.store.names().map((n) => this.sync(n)));
  }

  endpoint(app: string): string | undefined {
    const s = this.servers.get(app);
    return s === undefined ? undefined : `http://${this.bind}:${s.port}`;
  }

  /** Serialised per app so concurrent changes cannot leak a listener. */
  sync(name: string): Promise<void> {
    const prev = this.pending.get(name) ?? Promise.resolve();
    const next = prev.then(() => this.syncNow(name));
    this.pending.set(name, next);
    return next;
  }

  private async syncNow(name: string): Promise<void> {
    const app = this.store.apps.get(name);
    const want = this.serveApps && app !== undefined && app.serveHttp && isRunning(app);
    const have = this.servers.get(name);
    if (want && have === undefined) {
      const server = createServer((req, res) => {
        const current = this.store.apps.get(name);
        if (current === undefined) res.writeHead(502).end();
        else appHandler(current, req, res);
      });
      const port = await listen(server, this.bind);
      this.servers.set(name, { server, port });
    } else if (!want && have !== undefined) {
      this.servers.delete(name);
      await closeServer(have.server);
    }
  }

  private findApp(host: string): AppState | undefined {
    for (const app of this.store.apps.values()) if (app.vhostEnabled && app.domains.includes(host)) return app;
    return undefined;
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const host = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    const app = this.findApp(host);
    if (app === undefined) {
      res.writeHead(404, { "content-type": "text/html" }).end("<html><body><h1>404 Not Found</h1>nginx</body></html>");
      return;
    }
    if (!isRunning(app)) {
      res.writeHead(502, { "content-type": "text/html" }).end("<html><body><h1>502 Bad Gateway</h1>nginx</body></html>");
      return;
    }
    const target = this.servers.get(app.name);
    if (target === undefined) return appHandler(app, req, res);
    const upstream = request(
      { host: this.bind, port: target.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on("error", () => {
      if (!res.headersSent) res.writeHead(502).end("<html><body><h1>502 Bad Gateway</h1>nginx</body></html>");
      else res.destroy();
    });
    req.pipe(upstream);
  }

  async close(): Promise<void> {
    await Promise.all([...this.pending.values()].map((p) => p.catch(() => undefined)));
    const servers = [...this.servers.values()].map((s) => s.server);
    this.servers.clear();
    await Promise.all([...servers, ...(this.ingress ? [this.ingress] : [])].map(closeServer));
  }
}
