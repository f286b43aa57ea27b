/**
 * Rows to the API's JSON (snake_case, ISO timestamps, `object` names as Stripe does). Pure.
 */
import type { z } from "zod";

import { billingPhase, effectivePhase } from "../../reconciler/desired.ts";
import type { SubscriptionState } from "../../reconciler/types.ts";
import type { InstanceView, TicketView } from "../../state/api-reads.ts";
import type { BackupRow } from "../../state/backups.ts";
import type { backupSchema, instanceSchema, ticketSchema } from "./schemas.ts";

export interface Clock {
  readonly now: Date;
  readonly gracePeriodMs: number;
  readonly retentionPeriodMs: number;
}

const iso = (date: Date | null): string | null => (date ? date.toISOString() : null);

/** The phase billing and the override give the instance now, and why. */
export function desiredPhase(subscription: SubscriptionState, override: InstanceView["desiredState"], clock: Clock): ReturnType<typeof effectivePhase> & { billing: ReturnType<typeof billingPhase> } {
  const billing = billingPhase(subscription, clock);
  return { ...effectivePhase(billing, override), billing };
}

export function instanceJson(view: InstanceView, clock: Clock): z.output<typeof instanceSchema> {
  const desired = desiredPhase(view.subscription, view.desiredState, clock);
  const sub = view.subscription;
  return {
    id: view.id,
    object: "instance",
    subdomain: view.subdomain,
    tier: sub.tier,
    subscription_status: sub.status,
    phase: view.status,
    desired: { phase: desired.phase, reason: desired.reason, override: view.desiredState, changes_at: iso(desired.changesAt) },
    generation: view.generation,
    observed_generation: view.observedGeneration,
    converged: view.observedGeneration >= view.generation,
    health: { status: view.healthStatus, checked_at: iso(view.lastHealthCheck), components: healthComponents(view.healthDetails) },
    urls: view.urls,
    conditions: view.conditions.map((c) => ({
      type: c.type,
      status: c.status,
      reason: c.reason,
      message: c.message,
      last_transition_time: c.lastTransitionTime,
      observed_generation: c.observedGeneration,
    })),
    last_error: view.lastError,
    limits: {
      memory_mb: view.memoryLimitMb,
      cpus: view.cpuLimit,
      max_agents: sub.limits.maxAgents,
      max_messages_per_day: sub.limits.maxMessagesPerDay,
      max_storage_gb: sub.limits.maxStorageGb,
      max_platforms: sub.limits.maxPlatforms,
      max_team_members: sub.limits.maxTeamMembers,
    },
    restart_requested_at: iso(view.restartRequestedAt),
    created_at: view.createdAt.toISOString(),
  };
}

type ComponentHealth = { ok: boolean; status_code: number | null; latency_ms: number | null; error: string | null };

/** `instances.health_details.components` (src/state/health.ts writes it), defensively read. */
function healthComponents(details: unknown): Record<string, ComponentHealth> {
  const components = (details as { components?: unknown } | null)?.components;
  if (typeof components !== "object" || components === null) return {};
  const out: Record<string, ComponentHealth> = {};
  for (const [name, raw] of Object.entries(components as Record<string, Record<string, unknown>>)) {
    out[name] = {
      ok: raw.ok === true,
      status_code: typeof raw.statusCode === "number" ? raw.statusCode : null,
      latency_ms: typeof raw.latencyMs === "number" ? raw.latencyMs : null,
      error: typeof raw.error === "string" ? raw.error : null,
    };
  }
  return out;
}

export function backupJson(row: BackupRow): z.output<typeof backupSchema> {
  return {
    id: row.id,
    object: "backup",
    instance_id: row.instanceId,
    type: row.type,
    status: row.status,
    component: row.component,
    size_bytes: row.sizeBytes,
    sha256: row.sha256,
    error: row.error,
    created_at: row.createdAt.toISOString(),
    completed_at: iso(row.completedAt),
    expires_at: iso(row.expiresAt),
  };
}

export function ticketJson(row: TicketView): z.output<typeof ticketSchema> {
  return {
    id: row.id,
    object: "support_ticket",
    instance_id: row.instanceId,
    subject: row.subject,
    description: row.description,
    priority: row.priority,
    status: row.status,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
    resolved_at: iso(row.resolvedAt),
  };
}
