-- 0009: backups a paying customer can rely on (issue 8).
--
-- Contracts:
-- * A backup row is one archive of one component. A request without a component (a customer's
--   "back up my instance") is expanded by the controller into one row per component with storage;
--   the expansions point at the request through `request_id`.
-- * Every archive is encrypted before it is stored: `key_id` names the key (derived from
--   MASTER_KEY per instance) so keys can rotate; `sha256` and `size_bytes` are of the stored bytes
--   and are checked on every read; `verified_at` is the last full read-back.
-- * Expiry deletes the object first and marks the row `expired` after (the controller's backup
--   retention job), so a crash between the two only repeats an idempotent delete.
--   cleanup_expired_data() no longer marks backups expired: it could not delete their objects.
-- * A restore is a row of `instance_restores`, worked by the reconciler as journaled actions:
--   safety backup, stop, replace the storage, start. Inserting one wakes the instance's key.

alter type public.backup_type add value if not exists 'pre_restore';
alter type public.backup_type add value if not exists 'import';

alter table public.instance_backups
  add column key_id text check (key_id ~ '^[A-Za-z0-9:._-]{1,64}$'),
  add column verified_at timestamptz,
  add column request_id uuid references public.instance_backups (id) on delete set null;

create index instance_backups_request_idx on public.instance_backups (request_id) where request_id is not null;
create index instance_backups_requested_idx on public.instance_backups (instance_id, created_at) where status = 'requested';

create type public.restore_status as enum ('requested', 'in_progress', 'completed', 'failed');

create table public.instance_restores (
  id uuid primary key default gen_random_uuid(),
  backup_id uuid not null references public.instance_backups (id) on delete restrict,
  instance_id uuid not null references public.instances (id) on delete cascade, -- the target
  status public.restore_status not null default 'requested',
  safety_backup_id uuid references public.instance_backups (id) on delete set null,
  -- Set by the restore step itself, so a crash right after it does not replace the data again.
  replaced_at timestamptz,
  requested_by text not null default public.current_actor(),
  error text,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  completed_at timestamptz,
  updated_at timestamptz not null default now()
);

-- At most one restore of an instance at a time.
create unique index instance_restores_one_active on public.instance_restores (instance_id)
  where status in ('requested', 'in_progress');

create trigger instance_restores_set_updated_at
  before update on public.instance_restores
  for each row execute function public.set_updated_at();

create function public.instance_restores_notify() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_subscription uuid;
begin
  select subscription_id into v_subscription from public.instances where id = new.instance_id;
  if v_subscription is not null then
    perform pg_notify('mindroom_reconcile', v_subscription::text);
  end if;
  return new;
end
$$;

create trigger instance_restores_notify
  after insert on public.instance_restores
  for each row execute function public.instance_restores_notify();

-- Controller-only for now (the /v1 API restores through the controller's own login).
alter table public.instance_restores enable row level security;
revoke all on public.instance_restores from public, anon, authenticated;
grant all on public.instance_restores to service_role;

-- Retention moves to the controller, which deletes the object before marking the row.
create or replace function public.cleanup_expired_data() returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_audit integer;
  v_health integer;
  v_events integer;
  v_notifications integer;
begin
  delete from public.audit_logs where created_at < now() - interval '90 days';
  get diagnostics v_audit = row_count;
  delete from public.health_checks where checked_at < now() - interval '30 days';
  get diagnostics v_health = row_count;
  delete from public.stripe_events
   where status in ('processed', 'ignored')
     and coalesce(processed_at, received_at) < now() - interval '30 days';
  get diagnostics v_events = row_count;
  delete from public.notifications where sent_at < now() - interval '90 days';
  get diagnostics v_notifications = row_count;
  return jsonb_build_object('audit_logs_deleted', v_audit, 'health_checks_deleted', v_health,
                            'stripe_events_deleted', v_events, 'notifications_deleted', v_notifications);
end
$$;

revoke all on function public.instance_restores_notify() from public, anon, authenticated;
grant execute on function public.cleanup_expired_data() to service_role;
