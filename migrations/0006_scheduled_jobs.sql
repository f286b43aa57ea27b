-- Scheduled jobs run by the leader (DESIGN section 10). A job runs at most once per period across
-- every replica: the run claims its period by moving `last_period_start` forward in the same
-- transaction that does the work, so a leader change mid-period cannot run it twice.

create table public.scheduled_jobs (
  name text primary key check (name ~ '^[a-z][a-z0-9_]{1,62}$'),
  last_period_start timestamptz,
  last_run_at timestamptz,
  last_result jsonb,
  last_error text,
  updated_at timestamptz not null default now()
);

create trigger scheduled_jobs_set_updated_at
  before update on public.scheduled_jobs
  for each row execute function public.set_updated_at();

-- Controller-only, like the other controller tables: RLS on, no policy, no grant to API roles.
alter table public.scheduled_jobs enable row level security;
revoke all on public.scheduled_jobs from public, anon, authenticated;
grant all on public.scheduled_jobs to service_role;
