/**
 * `/v1/account`, `/v1/usage` and `/v1/support/tickets`: the account as the key sees it, its usage
 * per day and instance with the tier's limits, and its support tickets (a new ticket's priority
 * comes from the tier, as the database trigger sets it).
 */
import { accountView, billingTotals, findInstance, findTicket, listTickets, subscriptionsOf, todaysLimits, usageDays } from "../../../state/api-reads.ts";
import { createTicket } from "../../../state/api-writes.ts";
import { ApiError, errorResponses, notFound } from "../errors.ts";
import { authenticated } from "../guards.ts";
import { accountSchema, idempotencyHeaders, newTicketBody, ticketListSchema, ticketSchema, usageQuery, usageSchema } from "../schemas.ts";
import type { ApiApp, ApiContext } from "../server.ts";
import { ticketJson } from "../views.ts";

/** Tickets one list answers, newest first. */
const TICKET_PAGE = 100;
/** The longest usage range one request may ask for. */
const MAX_USAGE_DAYS = 366;

export function registerAccountRoutes(app: ApiApp, ctx: ApiContext): void {
  app.get("/v1/account", {
    schema: { tags: ["account"], summary: "The account this key belongs to, its tier and subscriptions", response: { 200: accountSchema, ...errorResponses() } },
  }, async (request) => {
    const caller = authenticated(request);
    const [account, subscriptions] = await ctx.db("read account", () => Promise.all([accountView(ctx.sql, caller.accountId), subscriptionsOf(ctx.sql, caller.accountId)]));
    if (!account) throw notFound("account", caller.accountId);
    return {
      id: account.id,
      object: "account" as const,
      email: account.email,
      full_name: account.fullName,
      company_name: account.companyName,
      tier: caller.tier,
      subscriptions: subscriptions.map((s) => ({ id: s.id, tier: s.tier, status: s.status, current_period_end: s.currentPeriodEnd?.toISOString() ?? null })),
      api_key: { id: caller.keyId, scopes: [...caller.scopes] },
      created_at: account.createdAt.toISOString(),
    };
  });

  app.get("/v1/usage", {
    config: { scope: "usage:read" },
    schema: { tags: ["usage"], summary: "Usage per UTC day and instance, the period's totals, the tier's limits and today's remaining messages", querystring: usageQuery, response: { 200: usageSchema, ...errorResponses() } },
  }, async (request) => {
    const caller = authenticated(request);
    const { from, to } = request.query;
    checkRange(from, to);
    const [days, totals, today, subscriptions] = await ctx.db("read usage", () =>
      Promise.all([usageDays(ctx.sql, caller.accountId, from, to), billingTotals(ctx.sql, caller.accountId, from, to), todaysLimits(ctx.sql, caller.accountId), subscriptionsOf(ctx.sql, caller.accountId)]),
    );
    const limits = subscriptions.find((s) => s.tier === caller.tier)?.limits;
    return {
      object: "usage" as const,
      from,
      to,
      tier: caller.tier,
      limits: {
        max_agents: limits?.maxAgents ?? null,
        max_messages_per_day: limits?.maxMessagesPerDay ?? null,
        max_storage_gb: limits?.maxStorageGb ?? null,
        max_platforms: limits?.maxPlatforms ?? null,
        max_team_members: limits?.maxTeamMembers ?? null,
      },
      totals,
      days: days.map((d) => ({ date: d.date, instance_id: d.instanceId, subdomain: d.subdomain, messages_sent: d.messagesSent, messages_received: d.messagesReceived, agents_used: d.agentsUsed, errors: d.errors, storage_bytes: d.storageBytes })),
      today: today.map((t) => ({ instance_id: t.instanceId, subdomain: t.subdomain, messages_remaining: remainingMessages(t.limits), limits: t.limits })),
    };
  });

  app.get("/v1/support/tickets", {
    config: { scope: "support:write" },
    schema: { tags: ["support"], summary: "Your support tickets, newest first (the latest 100)", response: { 200: ticketListSchema, ...errorResponses() } },
  }, async (request) => {
    const page = await ctx.db("list tickets", () => listTickets(ctx.sql, authenticated(request).accountId, TICKET_PAGE));
    return { object: "list" as const, data: page.items.map(ticketJson), has_more: page.hasMore };
  });

  app.post("/v1/support/tickets", {
    config: { scope: "support:write" },
    schema: { tags: ["support"], summary: "Open a support ticket (its priority follows your tier)", body: newTicketBody, headers: idempotencyHeaders, response: { 201: ticketSchema, ...errorResponses() } },
  }, async (request, reply) => {
    const caller = authenticated(request);
    const { subject, description, instance_id: instance } = request.body;
    const instanceId = instance === undefined ? null : (await ctx.db("find instance", () => findInstance(ctx.sql, caller.accountId, instance)))?.id;
    if (instanceId === undefined) throw new ApiError(404, "invalid_request_error", "resource_missing", `No such instance: '${instance}'`, { param: "instance_id" });
    const id = await ctx.db("create ticket", () => createTicket(ctx.sql, caller.actor, caller.accountId, { subject, description, instanceId }));
    const ticket = await ctx.db("read ticket", () => findTicket(ctx.sql, caller.accountId, id));
    if (!ticket) throw new Error(`ticket ${id} vanished after its insert`);
    return reply.code(201).send(ticketJson(ticket));
  });
}

function checkRange(from: string, to: string): void {
  const days = (Date.parse(to) - Date.parse(from)) / 86_400_000;
  if (days < 0) throw new ApiError(400, "invalid_request_error", "parameter_invalid", `to (${to}) is before from (${from})`, { param: "to" });
  if (days >= MAX_USAGE_DAYS) throw new ApiError(400, "invalid_request_error", "parameter_invalid", `At most ${MAX_USAGE_DAYS} days per request`, { param: "to" });
}

/** `check_usage_limits(...).messages_per_day`: limit minus used, or null when unlimited. */
function remainingMessages(limits: Record<string, unknown>): number | null {
  const entry = limits["messages_per_day"] as { used?: number; limit?: number | null; remaining?: number | null } | undefined;
  if (!entry || entry.limit === null || entry.limit === undefined) return null;
  return entry.remaining ?? Math.max(0, entry.limit - (entry.used ?? 0));
}
