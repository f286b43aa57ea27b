/**
 * `/v1/instances`: read the account's instances, and ask for stop, start, restart or reconcile.
 * An action answers 202 with the instance: it changes desired state (or asks the controller over
 * NOTIFY) and the controller acts in its own pass; nothing here talks to a Dokku host.
 */
import { findInstance, type InstanceView, listInstances } from "../../../state/api-reads.ts";
import { auditReconcileRequest, requestRestart, setDesiredState } from "../../../state/api-writes.ts";
import { conflict, errorResponses, notFound } from "../errors.ts";
import { authenticated } from "../guards.ts";
import { idempotencyHeaders, idParams, instanceListSchema, instanceSchema, listQuery } from "../schemas.ts";
import type { ApiApp, ApiContext } from "../server.ts";
import { desiredPhase, instanceJson } from "../views.ts";

const tags = ["instances"];

export function registerInstanceRoutes(app: ApiApp, ctx: ApiContext): void {
  app.get("/v1/instances", {
    config: { scope: "instances:read" },
    schema: { tags, summary: "List your instances, newest first", querystring: listQuery, response: { 200: instanceListSchema, ...errorResponses() } },
  }, async (request) => {
    const caller = authenticated(request);
    const page = await ctx.db("list instances", () => listInstances(ctx.sql, caller.accountId, request.query.limit, request.query.starting_after ?? null));
    if (!page) throw notFound("instance", request.query.starting_after ?? "");
    const clock = ctx.clock();
    return { object: "list" as const, data: page.items.map((view) => instanceJson(view, clock)), has_more: page.hasMore };
  });

  app.get("/v1/instances/:id", {
    config: { scope: "instances:read" },
    schema: { tags, summary: "Retrieve an instance: phase, desired and observed state, health, URLs, conditions, limits", params: idParams, response: { 200: instanceSchema, ...errorResponses() } },
  }, async (request) => instanceJson(await loadInstance(ctx, authenticated(request).accountId, request.params.id), ctx.clock()));

  registerAction(app, ctx, "stop", "Stop the instance (its data is kept)", async (view, actor, accountId) => {
    if (desiredPhase(view.subscription, view.desiredState, ctx.clock()).phase === "deprovisioned") throw deprovisioned(view);
    await setDesiredState(ctx.sql, actor, accountId, view.id, "stopped");
  });
  registerAction(app, ctx, "start", "Clear a stop; the instance runs when its subscription allows it", async (view, actor, accountId) => {
    const billing = desiredPhase(view.subscription, null, ctx.clock());
    if (billing.phase !== "running") throw conflict("subscription_does_not_allow", `This instance cannot be started: ${billing.reason}`);
    await setDesiredState(ctx.sql, actor, accountId, view.id, null);
  });
  registerAction(app, ctx, "restart", "Restart every component of a running instance", async (view, actor, accountId) => {
    const desired = desiredPhase(view.subscription, view.desiredState, ctx.clock());
    if (desired.phase !== "running") throw conflict("instance_not_running", `This instance is not meant to run (${desired.reason}): start it instead`);
    await requestRestart(ctx.sql, actor, accountId, view.id);
  });
  registerAction(app, ctx, "reconcile", "Ask the controller to check the instance against its hosts now", async (view, actor, accountId) => {
    await auditReconcileRequest(ctx.sql, actor, accountId, view.id);
    await ctx.deps.requestReconcile(view.subscription.id);
  });
}

type Action = (view: InstanceView, actor: string, accountId: string) => Promise<void>;

function registerAction(app: ApiApp, ctx: ApiContext, name: string, summary: string, act: Action): void {
  app.post(`/v1/instances/:id/${name}`, {
    config: { scope: "instances:write" },
    schema: { tags, summary, params: idParams, headers: idempotencyHeaders, response: { 202: instanceSchema, ...errorResponses() } },
  }, async (request, reply) => {
    const caller = authenticated(request);
    const view = await loadInstance(ctx, caller.accountId, request.params.id);
    await ctx.db(`${name} instance`, () => act(view, caller.actor, caller.accountId));
    const after = await loadInstance(ctx, caller.accountId, view.id);
    return reply.code(202).send(instanceJson(after, ctx.clock()));
  });
}

/** One of the caller's instances, or 404 (another account's instance is answered the same way). */
export async function loadInstance(ctx: ApiContext, accountId: string, id: string): Promise<InstanceView> {
  const view = await ctx.db("find instance", () => findInstance(ctx.sql, accountId, id));
  if (!view) throw notFound("instance", id);
  return view;
}

function deprovisioned(view: InstanceView) {
  return conflict("instance_deprovisioned", `Instance ${view.subdomain} is torn down (or being torn down): there is nothing to stop`);
}
