/**
 * A stateful fake of the Stripe API parts the controller uses, served over HTTP on 127.0.0.1 so the
 * REAL stripe-node client talks to it (`host`, `port`, `protocol: 'http'`). State and lifecycles
 * live in StripeSim (src/sources/stripe/sim.ts); this file is the wire: form-encoded bodies with
 * bracket notation, query strings, `{object:'list', data, has_more, url}` pagination with
 * `starting_after` / `ending_before`, and Stripe-shaped errors (404 `resource_missing`).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import Stripe from "stripe";

import type { JsonObject } from "../../src/sources/stripe/objects.ts";
import { PAID_TIERS, type PaidTier } from "../../src/sources/stripe/objects.ts";
import { SimMissingError, SimStateError, StripeSim } from "../../src/sources/stripe/sim.ts";
import { arr, type FormObject, num, obj, parseForm, str } from "./form.ts";

/** Unix-seconds clock the tests move by hand. */
export class FakeClock {
  constructor(private seconds: number = Math.floor(Date.now() / 1000)) {}
  now = (): number => this.seconds;
  advance(seconds: number): void {
    this.seconds += seconds;
  }
}

export const FAKE_API_KEY = "sk_test_fake";

class ApiError extends Error {
  constructor(readonly status: number, readonly type: string, readonly code: string | null, message: string, readonly param?: string) {
    super(message);
  }
}

export interface FakeStripe {
  readonly sim: StripeSim;
  readonly clock: FakeClock;
  readonly port: number;
  /** Requests served, as `METHOD /path` (for assertions on what the controller asked). */
  readonly requests: string[];
  /** The real stripe-node client pointed at this fake. */
  client(): Stripe;
  /** The next `n` API requests answer 500 `api_error`. */
  failNext(n: number): void;
  close(): Promise<void>;
}

export async function startFakeStripe(options: { clock?: FakeClock; prefix?: string } = {}): Promise<FakeStripe> {
  const clock = options.clock ?? new FakeClock();
  const sim = new StripeSim(clock.now, options.prefix);
  const requests: string[] = [];
  let failures = 0;
  const server: Server = createServer((req, res) => {
    void (async () => {
      requests.push(`${req.method} ${(req.url ?? "").split("?")[0]}`);
      try {
        if (req.headers.authorization !== `Bearer ${FAKE_API_KEY}`) throw new ApiError(401, "invalid_request_error", null, "Invalid API Key provided");
        if (failures > 0) {
          failures -= 1;
          throw new ApiError(500, "api_error", null, "injected failure");
        }
        send(res, 200, route(sim, req.method ?? "GET", new URL(req.url ?? "/", "http://fake"), await readForm(req)));
      } catch (thrown) {
        const e = toApiError(thrown);
        send(res, e.status, { error: { type: e.type, code: e.code, message: e.message, ...(e.param ? { param: e.param } : {}) } });
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    sim,
    clock,
    port,
    requests,
    client: () => new Stripe(FAKE_API_KEY, { host: "127.0.0.1", port, protocol: "http", maxNetworkRetries: 0, telemetry: false, timeout: 10_000 }),
    failNext: (n) => {
      failures = n;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function toApiError(thrown: unknown): ApiError {
  if (thrown instanceof ApiError) return thrown;
  if (thrown instanceof SimMissingError) return new ApiError(404, "invalid_request_error", "resource_missing", thrown.message, "id");
  if (thrown instanceof SimStateError) return new ApiError(400, "invalid_request_error", "subscription_invalid_state", thrown.message);
  return new ApiError(500, "api_error", null, thrown instanceof Error ? thrown.message : String(thrown));
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "request-id": `req_${Math.random().toString(36).slice(2)}` });
  res.end(json);
}

async function readForm(req: IncomingMessage): Promise<FormObject> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const query = (req.url ?? "").split("?")[1] ?? "";
  return { ...parseForm(query), ...parseForm(Buffer.concat(chunks).toString("utf8")) };
}

function route(sim: StripeSim, method: string, url: URL, params: FormObject): unknown {
  const parts = url.pathname.split("/").filter(Boolean);
  if (parts[0] !== "v1") throw new ApiError(404, "invalid_request_error", "resource_missing", `Unrecognized request URL (${method}: ${url.pathname})`);
  const [, resource, id, action] = parts;
  const key = `${method} ${resource}${id === undefined ? "" : "/:id"}${action === undefined ? "" : `/${action}`}`;
  switch (key) {
    case "POST customers":
      return sim.customerObject(sim.createCustomer({ email: str(params.email) ?? null, name: str(params.name) ?? null }));
    case "GET customers/:id":
      return found(sim.customerObject(id!), "customer", id!);
    case "POST customers/:id":
      sim.updateCustomer(id!, { ...(params.email !== undefined ? { email: str(params.email) ?? null } : {}), ...(params.name !== undefined ? { name: str(params.name) ?? null } : {}) });
      return sim.customerObject(id!);
    case "DELETE customers/:id":
      sim.deleteCustomer(id!);
      return sim.customerObject(id!);
    case "GET prices/:id":
      return found(sim.prices.get(id!), "price", id!);
    case "GET prices":
      return list([...sim.prices.values()], params, "/v1/prices");
    case "POST subscriptions":
      return sim.subscriptionObject(createSubscription(sim, params));
    case "GET subscriptions/:id":
      return found(sim.subscriptionObject(id!), "subscription", id!);
    case "GET subscriptions":
      return list(listSubscriptions(sim, params), params, "/v1/subscriptions");
    case "POST subscriptions/:id":
      updateSubscription(sim, id!, params);
      return sim.subscriptionObject(id!);
    case "DELETE subscriptions/:id":
      sim.cancelNow(id!);
      return sim.subscriptionObject(id!);
    case "POST subscriptions/:id/resume":
      sim.resume(id!);
      return sim.subscriptionObject(id!);
    case "GET events/:id":
      return found(sim.events.find((e) => e.id === id), "event", id!);
    case "GET events":
      return list(filterEvents(sim, params), params, "/v1/events");
    default:
      throw new ApiError(404, "invalid_request_error", "resource_missing", `Unrecognized request URL (${method}: ${url.pathname})`);
  }
}

function found<T>(value: T | undefined, kind: string, id: string): T {
  if (value === undefined) throw new SimMissingError(kind, id);
  return value;
}

function tierOfPriceId(sim: StripeSim, priceId: string | undefined): PaidTier {
  const tier = PAID_TIERS.find((t) => sim.priceId(t) === priceId);
  if (tier === undefined) throw new ApiError(400, "invalid_request_error", "resource_missing", `No such price: '${priceId}'`, "items[0][price]");
  return tier;
}

function createSubscription(sim: StripeSim, params: FormObject): string {
  const customer = str(params.customer);
  if (customer === undefined) throw new ApiError(400, "invalid_request_error", "parameter_missing", "Missing required param: customer.", "customer");
  const item = obj(arr(params.items)?.[0]);
  const trialDays = num(params.trial_period_days);
  return sim.createSubscription({
    customer,
    tier: tierOfPriceId(sim, str(item?.price)),
    ...(trialDays !== undefined ? { trialDays } : {}),
    failFirstPayment: str(obj(params.metadata)?.fail_first_payment) === "true",
  });
}

function updateSubscription(sim: StripeSim, id: string, params: FormObject): void {
  found(sim.subscriptions.get(id), "subscription", id);
  const cancel = str(params.cancel_at_period_end);
  if (cancel !== undefined) sim.setCancelAtPeriodEnd(id, cancel === "true");
  const price = str(obj(arr(params.items)?.[0])?.price);
  if (price !== undefined) sim.changeTier(id, tierOfPriceId(sim, price));
}

function listSubscriptions(sim: StripeSim, params: FormObject): JsonObject[] {
  const customer = str(params.customer);
  const status = str(params.status);
  return [...sim.subscriptions.values()]
    .filter((s) => customer === undefined || s.customer === customer)
    .filter((s) => {
      if (status === "all") return true;
      if (status === undefined) return s.status !== "canceled" && s.status !== "incomplete_expired";
      if (status === "ended") return s.status === "canceled" || s.status === "incomplete_expired";
      return s.status === status;
    })
    .reverse()
    .map((s) => sim.subscriptionObject(s.id)!);
}

function filterEvents(sim: StripeSim, params: FormObject): JsonObject[] {
  const created = obj(params.created);
  const exact = num(str(params.created));
  const bounds = { gt: num(created?.gt), gte: num(created?.gte), lt: num(created?.lt), lte: num(created?.lte) };
  const type = str(params.type);
  return [...sim.events].reverse().filter((e) => {
    const c = e.created as number;
    if (exact !== undefined && c !== exact) return false;
    if (bounds.gt !== undefined && !(c > bounds.gt)) return false;
    if (bounds.gte !== undefined && !(c >= bounds.gte)) return false;
    if (bounds.lt !== undefined && !(c < bounds.lt)) return false;
    if (bounds.lte !== undefined && !(c <= bounds.lte)) return false;
    return type === undefined || (type.endsWith("*") ? (e.type as string).startsWith(type.slice(0, -1)) : e.type === type);
  });
}

/** Newest-first list; `starting_after` pages toward older objects, `ending_before` toward newer. */
function list(items: JsonObject[], params: FormObject, url: string): JsonObject {
  const limit = Math.min(100, Math.max(1, num(params.limit) ?? 10));
  const after = str(params.starting_after);
  const before = str(params.ending_before);
  let window = items;
  if (after !== undefined) window = items.slice(indexOf(items, after, "starting_after") + 1);
  if (before !== undefined) {
    const end = indexOf(items, before, "ending_before");
    window = items.slice(Math.max(0, end - limit), end);
    return { object: "list", data: window, has_more: end - limit > 0, url };
  }
  return { object: "list", data: window.slice(0, limit), has_more: window.length > limit, url };
}

function indexOf(items: JsonObject[], id: string, param: string): number {
  const index = items.findIndex((i) => i.id === id);
  if (index < 0) throw new ApiError(400, "invalid_request_error", "resource_missing", `No such object: '${id}'`, param);
  return index;
}
