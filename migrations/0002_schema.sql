-- 0002: the data model (DESIGN.md section 4): enums, the tier policy, the eight product tables,
-- the controller's tables, constraints and indexes. Triggers are in 0003, functions in 0004,
-- RLS and grants in 0005.
--
-- Conventions: uuid keys from gen_random_uuid() for rows users see; bigserial for append-only
-- logs; every timestamp is timestamptz; `updated_at` is maintained by trigger (0003). Foreign keys
-- RESTRICT where deleting the parent would orphan something running on a host (an instance's
-- Dokku apps are torn down by the controller, never by a cascade), CASCADE for owned history.

-- Enums -----------------------------------------------------------------------------------------

create type public.tier_name as enum ('free', 'starter', 'professional', 'enterprise');

-- Stripe's subscription statuses, verbatim (the first schema's British `cancelled` and its missing
-- `unpaid`/`incomplete_expired` made real Stripe payloads violate the check).
create type public.subscription_status as enum (
  'incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused'
);

-- Observed lifecycle of an instance, written only by the controller.
create type public.instance_status as enum (
  'pending', 'provisioning', 'running', 'stopping', 'stopped',
  'deprovisioning', 'deprovisioned', 'failed', 'error'
);

-- The three targets of a desired state, ordered from most to least alive.
create type public.instance_phase as enum ('running', 'stopped', 'deprovisioned');

create type public.health_status as enum ('unknown', 'healthy', 'degraded', 'critical', 'unreachable');

-- Intent journal outcome: `unknown` = the action may or may not have happened (crash, dropped SSH).
create type public.operation_status as enum ('pending', 'succeeded', 'failed', 'unknown');

-- Webhook inbox: `failed` will be retried at next_attempt_at; `dead` gave up; `ignored` = a type we
-- do not act on (still answered 200 and stored, so it is never re-fetched).
create type public.stripe_event_status as enum ('pending', 'processed', 'failed', 'dead', 'ignored');

create type public.backup_type as enum ('manual', 'automatic', 'pre_deprovision', 'pre_upgrade');
create type public.backup_status as enum ('requested', 'in_progress', 'completed', 'failed', 'expired');

create type public.ticket_priority as enum ('low', 'normal', 'high', 'urgent');
create type public.ticket_status as enum ('open', 'in_progress', 'waiting_on_customer', 'resolved', 'closed');

-- Tier policy -----------------------------------------------------------------------------------

-- One row per tier: usage limits (NULL = unlimited), resource limits of each app, feature flags.
-- Subscriptions copy limits and features from here on insert and on tier change (0003); the
-- controller reads memory/cpu/backup policy from here when it computes desired state.
create table public.tiers (
  name public.tier_name primary key,
  display_name text not null,
  rank int not null unique, -- free 0 < starter < professional < enterprise: "highest tier wins"
  max_agents int check (max_agents > 0),
  max_messages_per_day int check (max_messages_per_day > 0),
  max_storage_gb int check (max_storage_gb > 0),
  max_platforms int check (max_platforms > 0),
  max_team_members int check (max_team_members > 0),
  memory_mb int not null check (memory_mb >= 64),
  cpus numeric(6, 2) not null check (cpus > 0),
  backup_daily boolean not null,
  -- Every known feature as a boolean, so `features ->> 'voice'` is never ambiguous.
  features jsonb not null check (jsonb_typeof(features) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

insert into public.tiers (name, display_name, rank, max_agents, max_messages_per_day, max_storage_gb,
                          max_platforms, max_team_members, memory_mb, cpus, backup_daily, features)
values
  ('free', 'Free', 0, 1, 100, 1, 1, 1, 512, 0.5, false,
   '{"api_access": false, "voice": false, "file_uploads": false, "custom_agents": false,
     "priority_support": false, "team_collaboration": false, "sla": false}'),
  ('starter', 'Starter', 1, 3, 1000, 5, 3, 3, 1024, 1, true,
   '{"api_access": true, "voice": true, "file_uploads": true, "custom_agents": false,
     "priority_support": false, "team_collaboration": false, "sla": false}'),
  ('professional', 'Professional', 2, 10, 10000, 50, 10, 10, 2048, 2, true,
   '{"api_access": true, "voice": true, "file_uploads": true, "custom_agents": true,
     "priority_support": true, "team_collaboration": true, "sla": false}'),
  ('enterprise', 'Enterprise', 3, null, null, null, null, null, 4096, 4, true,
   '{"api_access": true, "voice": true, "file_uploads": true, "custom_agents": true,
     "priority_support": true, "team_collaboration": true, "sla": true}');

-- Product tables --------------------------------------------------------------------------------

-- accounts.id equals auth.users.id (a trigger in 0003 creates the row on sign-up), which is what
-- makes `id = auth.uid()` in the policies meaningful.
create table public.accounts (
  id uuid primary key default gen_random_uuid(),
  email text not null unique check (position('@' in email) > 1),
  full_name text,
  company_name text,
  stripe_customer_id text unique check (stripe_customer_id <> ''),
  is_admin boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null references public.accounts (id) on delete restrict,
  stripe_subscription_id text unique check (stripe_subscription_id <> ''), -- NULL: free tier
  stripe_price_id text,
  tier public.tier_name not null default 'free' references public.tiers (name),
  status public.subscription_status not null,
  -- Limits and features: copied from `tiers` (0003); NULL limit = unlimited.
  max_agents int,
  max_messages_per_day int,
  max_storage_gb int,
  max_platforms int,
  max_team_members int,
  features jsonb not null default '{}'::jsonb check (jsonb_typeof(features) = 'object'),
  -- Usage counters.
  messages_today int not null default 0 check (messages_today >= 0),
  usage_reset_at timestamptz not null default now(),
  -- Billing state from Stripe.
  trial_ends_at timestamptz,
  current_period_start timestamptz,
  current_period_end timestamptz,
  cancel_at_period_end boolean not null default false,
  canceled_at timestamptz,
  past_due_since timestamptz, -- maintained by trigger on status (0003) unless set explicitly
  stripe_synced_at timestamptz,
  -- `created` of the Stripe event or snapshot last applied: an older one must not overwrite it.
  stripe_state_at timestamptz,
  region text, -- preferred host region, NULL = any
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Target of instances' composite foreign key: an instance's account is its subscription's.
  unique (id, account_id)
);

create index subscriptions_account_idx on public.subscriptions (account_id);
create index subscriptions_status_idx on public.subscriptions (status);
create index subscriptions_tier_idx on public.subscriptions (tier);

create table public.dokku_hosts (
  id uuid primary key default gen_random_uuid(),
  name text not null unique check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
  ssh_url text not null check (ssh_url ~ '^ssh://'),
  host_key text, -- pinned OpenSSH public-key line; NULL = learn on first contact
  region text,
  capacity int not null default 100 check (capacity >= 0), -- max live instances
  enabled boolean not null default true,
  dokku_version text,
  -- HTTP address that routes by Host header; the prober uses it when set, else https://<domain>.
  ingress_url text check (ingress_url ~ '^https?://'),
  last_seen_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.instances (
  id uuid primary key default gen_random_uuid(),
  subscription_id uuid not null,
  account_id uuid not null references public.accounts (id) on delete restrict,
  -- The Dokku apps are `<subdomain>-<component>`: short, lowercase, a valid DNS label.
  subdomain text not null unique check (subdomain ~ '^[a-z][a-z0-9-]{1,29}[a-z0-9]$'),
  host_id uuid references public.dokku_hosts (id) on delete restrict,
  status public.instance_status not null default 'pending',
  -- Override that can only lower the phase billing allows (running > stopped > deprovisioned).
  desired_state public.instance_phase,
  desired_state_changed_at timestamptz, -- by trigger; a resume counts as activity for auto-pause
  reconcile_paused boolean not null default false,
  generation bigint not null default 1 check (generation >= 1),
  observed_generation bigint not null default 0 check (observed_generation >= 0),
  conditions jsonb not null default '[]'::jsonb check (jsonb_typeof(conditions) = 'array'),
  frontend_url text,
  backend_url text,
  matrix_url text,
  config jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
  memory_limit_mb int check (memory_limit_mb >= 64),
  cpu_limit numeric(6, 2) check (cpu_limit > 0),
  health_status public.health_status not null default 'unknown',
  health_details jsonb,
  last_health_check timestamptz,
  uptime_percentage numeric(5, 2) check (uptime_percentage between 0 and 100),
  last_error text,
  restart_count int not null default 0 check (restart_count >= 0),
  last_restart_at timestamptz,
  last_usage_at timestamptz,
  provisioned_at timestamptz,
  stopped_at timestamptz,
  deprovisioned_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  foreign key (subscription_id, account_id)
    references public.subscriptions (id, account_id) on delete restrict on update cascade
);

-- At most one live instance per subscription (the first schema had no such constraint and
-- double-provisioned on refresh).
create unique index instances_one_live_per_subscription
  on public.instances (subscription_id) where status <> 'deprovisioned';
create index instances_subscription_idx on public.instances (subscription_id);
create index instances_account_idx on public.instances (account_id);
create index instances_host_idx on public.instances (host_id) where host_id is not null;
create index instances_status_idx on public.instances (status);
-- "Which instances have not converged": status command, metrics.
create index instances_unconverged_idx on public.instances (id) where generation > observed_generation;

create table public.usage_metrics (
  id bigserial primary key,
  instance_id uuid not null references public.instances (id) on delete cascade,
  account_id uuid not null references public.accounts (id) on delete cascade, -- filled by trigger
  date date not null,
  messages_sent int not null default 0 check (messages_sent >= 0),
  messages_received int not null default 0 check (messages_received >= 0),
  agents_used int not null default 0 check (agents_used >= 0), -- distinct agents that day
  agents jsonb not null default '{}'::jsonb check (jsonb_typeof(agents) = 'object'), -- name -> count
  tools_used jsonb not null default '{}'::jsonb check (jsonb_typeof(tools_used) = 'object'),
  platforms_active jsonb not null default '{}'::jsonb check (jsonb_typeof(platforms_active) = 'object'),
  errors int not null default 0 check (errors >= 0),
  storage_bytes bigint check (storage_bytes >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (instance_id, date)
);

create index usage_metrics_account_date_idx on public.usage_metrics (account_id, date);

create table public.audit_logs (
  id bigserial primary key,
  account_id uuid references public.accounts (id) on delete set null,
  instance_id uuid references public.instances (id) on delete set null,
  action text not null check (action ~ '^[a-z][a-z0-9_.:-]{1,80}$'),
  action_category text not null check (action_category in (
    'billing', 'instance', 'reconcile', 'health', 'backup', 'account', 'security', 'support',
    'usage', 'system'
  )),
  details jsonb not null default '{}'::jsonb,
  actor text not null default 'system', -- 'controller', 'user:<uuid>', 'stripe', 'system', ...
  success boolean not null default true,
  error_message text,
  ip_address inet,
  created_at timestamptz not null default now()
);

create index audit_logs_account_time_idx on public.audit_logs (account_id, created_at desc);
create index audit_logs_instance_time_idx on public.audit_logs (instance_id, created_at desc);
create index audit_logs_action_time_idx on public.audit_logs (action, created_at desc);
create index audit_logs_category_time_idx on public.audit_logs (action_category, created_at desc);
create index audit_logs_time_idx on public.audit_logs (created_at);

create table public.support_tickets (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null references public.accounts (id) on delete cascade,
  instance_id uuid references public.instances (id) on delete set null,
  subject text not null check (length(subject) between 1 and 200),
  description text not null,
  priority public.ticket_priority not null, -- NULL on insert = from the account's tier (0003)
  status public.ticket_status not null default 'open',
  assigned_to text,
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index support_tickets_account_idx on public.support_tickets (account_id, created_at desc);
create index support_tickets_open_idx on public.support_tickets (priority, created_at)
  where status not in ('resolved', 'closed');

create table public.instance_backups (
  id uuid primary key default gen_random_uuid(),
  instance_id uuid not null references public.instances (id) on delete cascade,
  backup_type public.backup_type not null default 'manual',
  status public.backup_status not null default 'requested',
  component text check (component in ('matrix', 'backend', 'frontend')), -- NULL = every component
  location text, -- object key in the backup store; never a credential
  size_bytes bigint check (size_bytes >= 0),
  sha256 text check (sha256 ~ '^[0-9a-f]{64}$'),
  expires_at timestamptz,
  error text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  updated_at timestamptz not null default now(),
  -- A completed backup is only "completed" with a verified artefact (the first platform's mock
  -- recorded completed backups that copied nothing).
  check (status <> 'completed' or (location is not null and size_bytes is not null and sha256 is not null))
);

create index instance_backups_instance_idx on public.instance_backups (instance_id, created_at desc);
create index instance_backups_work_idx on public.instance_backups (created_at)
  where status in ('requested', 'in_progress');
create index instance_backups_expiry_idx on public.instance_backups (expires_at) where status = 'completed';

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  account_id uuid not null references public.accounts (id) on delete cascade,
  name text not null check (length(name) between 1 and 100),
  key_hash text not null unique check (key_hash ~ '^[0-9a-f]{64}$'), -- hex sha256; never the key
  key_prefix text not null check (length(key_prefix) between 4 and 16), -- shown to identify a key
  permissions text[] not null default array['read']::text[],
  last_used_at timestamptz,
  expires_at timestamptz,
  is_active boolean not null default true,
  created_at timestamptz not null default now()
);

create index api_keys_account_idx on public.api_keys (account_id);

-- Controller tables -----------------------------------------------------------------------------

-- The webhook inbox. Insert with ON CONFLICT (id) DO NOTHING before answering 200.
create table public.stripe_events (
  id text primary key check (id <> ''),
  type text not null,
  api_version text,
  livemode boolean,
  object_id text,
  customer_id text,
  created timestamptz not null, -- Stripe's `created`: the ordering guard compares it
  payload jsonb not null,
  received_at timestamptz not null default now(),
  status public.stripe_event_status not null default 'pending',
  processed_at timestamptz,
  attempts int not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz not null default now(),
  last_error text
);

-- Work to claim, oldest arrival first.
create index stripe_events_pending_idx on public.stripe_events (received_at)
  where status in ('pending', 'failed');
create index stripe_events_customer_idx on public.stripe_events (customer_id, created);
create index stripe_events_done_idx on public.stripe_events (processed_at)
  where status in ('processed', 'ignored');

-- Leader lease. The epoch increases on every change of holder and fences the journal (0003).
create table public.controller_leases (
  name text primary key,
  holder text,
  epoch bigint not null default 0 check (epoch >= 0),
  renewed_at timestamptz,
  expires_at timestamptz
);

insert into public.controller_leases (name, epoch) values ('reconciler', 0) on conflict do nothing;

-- The intent journal: a row is committed `pending` before an external action runs.
create table public.instance_operations (
  id bigserial primary key,
  instance_id uuid not null references public.instances (id) on delete cascade,
  action text not null check (action ~ '^[a-zA-Z][a-zA-Z0-9_]{0,62}$'),
  target text not null, -- the Dokku app (or storage entry) acted on
  params_hash text,
  attempt int not null default 1 check (attempt >= 1),
  epoch bigint not null, -- must equal the current lease epoch (fenced by trigger, 0003)
  status public.operation_status not null default 'pending',
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  error text
);

create index instance_operations_open_idx on public.instance_operations (instance_id, started_at)
  where status in ('pending', 'unknown');
create index instance_operations_instance_idx on public.instance_operations (instance_id, started_at desc);

create table public.health_checks (
  id bigserial primary key,
  instance_id uuid not null references public.instances (id) on delete cascade,
  component text not null check (component in ('matrix', 'backend', 'frontend')),
  ok boolean not null,
  status_code int check (status_code between 100 and 599),
  latency_ms int check (latency_ms >= 0),
  error text,
  checked_at timestamptz not null default now()
);

create index health_checks_latest_idx on public.health_checks (instance_id, component, checked_at desc);
create index health_checks_time_idx on public.health_checks (checked_at);

-- Email outbox: `dedupe_key` makes "exactly once" an insert with ON CONFLICT DO NOTHING.
create table public.notifications (
  id bigserial primary key,
  account_id uuid references public.accounts (id) on delete cascade,
  instance_id uuid references public.instances (id) on delete set null,
  kind text not null check (kind ~ '^[a-z][a-z0-9_]{1,40}$'), -- welcome, cancellation, health_alert
  dedupe_key text not null unique,
  recipient text not null,
  subject text not null,
  body text not null,
  payload jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  attempts int not null default 0 check (attempts >= 0),
  last_error text
);

create index notifications_unsent_idx on public.notifications (created_at) where sent_at is null;
create index notifications_account_idx on public.notifications (account_id, created_at desc);
