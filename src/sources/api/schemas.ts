/**
 * The `/v1` API's shapes, as zod schemas: the same objects validate requests, check responses
 * before they leave, and generate `/v1/openapi.json` (schemas with an `id` become components).
 */
import { z } from "zod";

const timestamp = z.iso.datetime({ offset: true });
const nullableTimestamp = timestamp.nullable();

/** `Idempotency-Key` on every POST (idempotency.ts applies it; declared here for the document). */
export const idempotencyHeaders = z.object({ "idempotency-key": z.string().min(1).max(255).optional() });

export const idParams = z.object({ id: z.string().min(1).max(100).describe("A uuid, or for an instance its subdomain") });

export const conditionSchema = z.object({
  type: z.string(),
  status: z.enum(["True", "False", "Unknown"]),
  reason: z.string(),
  message: z.string(),
  last_transition_time: z.string(),
  observed_generation: z.number().int(),
});

const componentHealth = z.object({
  ok: z.boolean(),
  status_code: z.number().int().nullable(),
  latency_ms: z.number().nullable(),
  error: z.string().nullable(),
});

export const instanceSchema = z
  .object({
    id: z.guid(),
    object: z.literal("instance"),
    subdomain: z.string(),
    tier: z.string(),
    subscription_status: z.string(),
    phase: z.string().describe("What the instance is: the controller's last observed status"),
    desired: z.object({
      phase: z.enum(["running", "stopped", "deprovisioned"]),
      reason: z.string(),
      override: z.enum(["running", "stopped", "deprovisioned"]).nullable(),
      changes_at: nullableTimestamp,
    }),
    generation: z.number().int(),
    observed_generation: z.number().int(),
    converged: z.boolean(),
    health: z.object({
      status: z.enum(["unknown", "healthy", "degraded", "critical", "unreachable"]),
      checked_at: nullableTimestamp,
      components: z.record(z.string(), componentHealth),
    }),
    urls: z.object({ frontend: z.string().nullable(), backend: z.string().nullable(), matrix: z.string().nullable() }),
    conditions: z.array(conditionSchema),
    last_error: z.string().nullable(),
    limits: z.object({
      memory_mb: z.number().int().nullable(),
      cpus: z.number().nullable(),
      max_agents: z.number().int().nullable(),
      max_messages_per_day: z.number().int().nullable(),
      max_storage_gb: z.number().int().nullable(),
      max_platforms: z.number().int().nullable(),
      max_team_members: z.number().int().nullable(),
    }),
    restart_requested_at: nullableTimestamp,
    created_at: timestamp,
  })
  .meta({ id: "Instance" });

export const instanceListSchema = z
  .object({ object: z.literal("list"), data: z.array(instanceSchema), has_more: z.boolean() })
  .meta({ id: "InstanceList" });

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(10),
  starting_after: z.string().max(100).optional(),
});

export const backupSchema = z
  .object({
    id: z.guid(),
    object: z.literal("backup"),
    instance_id: z.guid(),
    type: z.string(),
    status: z.enum(["requested", "in_progress", "completed", "failed", "expired"]),
    component: z.string().nullable(),
    size_bytes: z.number().int().nullable(),
    sha256: z.string().nullable(),
    error: z.string().nullable(),
    created_at: timestamp,
    completed_at: nullableTimestamp,
    expires_at: nullableTimestamp,
  })
  .meta({ id: "Backup" });

export const backupListSchema = z.object({ object: z.literal("list"), data: z.array(backupSchema), has_more: z.boolean() }).meta({ id: "BackupList" });

export const restoreSchema = z
  .object({ id: z.guid(), object: z.literal("restore"), backup_id: z.guid(), instance_id: z.guid(), status: z.string() })
  .meta({ id: "Restore" });

export const accountSchema = z
  .object({
    id: z.guid(),
    object: z.literal("account"),
    email: z.string(),
    full_name: z.string().nullable(),
    company_name: z.string().nullable(),
    tier: z.string(),
    subscriptions: z.array(z.object({ id: z.guid(), tier: z.string(), status: z.string(), current_period_end: nullableTimestamp })),
    api_key: z.object({ id: z.guid(), scopes: z.array(z.string()) }),
    created_at: timestamp,
  })
  .meta({ id: "Account" });

const date = z.iso.date();

export const usageQuery = z.object({ from: date, to: date });

export const usageSchema = z
  .object({
    object: z.literal("usage"),
    from: date,
    to: date,
    tier: z.string(),
    limits: z.object({
      max_agents: z.number().int().nullable(),
      max_messages_per_day: z.number().int().nullable(),
      max_storage_gb: z.number().int().nullable(),
      max_platforms: z.number().int().nullable(),
      max_team_members: z.number().int().nullable(),
    }),
    totals: z.record(z.string(), z.unknown()),
    days: z.array(
      z.object({
        date,
        instance_id: z.guid(),
        subdomain: z.string(),
        messages_sent: z.number().int(),
        messages_received: z.number().int(),
        agents_used: z.number().int(),
        errors: z.number().int(),
        storage_bytes: z.number().int().nullable(),
      }),
    ),
    today: z.array(z.object({ instance_id: z.guid(), subdomain: z.string(), messages_remaining: z.number().int().nullable(), limits: z.record(z.string(), z.unknown()) })),
  })
  .meta({ id: "Usage" });

export const ticketSchema = z
  .object({
    id: z.guid(),
    object: z.literal("support_ticket"),
    instance_id: z.guid().nullable(),
    subject: z.string(),
    description: z.string(),
    priority: z.string(),
    status: z.string(),
    created_at: timestamp,
    updated_at: timestamp,
    resolved_at: nullableTimestamp,
  })
  .meta({ id: "SupportTicket" });

export const ticketListSchema = z.object({ object: z.literal("list"), data: z.array(ticketSchema), has_more: z.boolean() }).meta({ id: "SupportTicketList" });

export const newTicketBody = z
  .object({
    subject: z.string().trim().min(1).max(200),
    description: z.string().trim().min(1).max(20_000),
    instance_id: z.string().max(100).optional().describe("An instance id or subdomain of this account"),
  })
  .strict();
