-- 0005: Row Level Security, table and column privileges, function privileges.
--
-- Model (DESIGN.md section 4):
-- * RLS is enabled on EVERY table in `public`, the controller's included; a table with no policy
--   for a role is invisible to it. test/sql/rls.test.ts fails for a new table without RLS.
-- * `anon` has no privilege on any table or function: it sees nothing.
-- * `authenticated` (a signed-in dashboard user, auth.uid()) gets SELECT on the product tables and
--   the writes listed below, and the policies narrow every one to the user's own rows. The
--   controller's tables are not granted at all.
-- * `service_role` has every privilege and BYPASSRLS (0001); the controller's own login owns the
--   tables and is not subject to RLS either.
-- * Privileged columns are protected by COLUMN grants, not by policies (a policy cannot compare
--   old and new values): the first platform let users UPDATE their own is_admin, tier and
--   stripe_customer_id until column grants fixed it. Supabase grants ALL on new tables to the
--   API roles by default, so everything is revoked first and granted back narrowly.

do $$
declare
  t record;
begin
  for t in select c.relname from pg_class c
            where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') loop
    execute format('alter table public.%I enable row level security', t.relname);
  end loop;
end
$$;

revoke all on all tables in schema public from public, anon, authenticated;
revoke all on all sequences in schema public from public, anon, authenticated;
-- Functions: only this schema's own (an extension installed into public keeps its grants).
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.pronamespace = 'public'::regnamespace
              and not exists (select 1 from pg_depend d
                               where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e') loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
  end loop;
end
$$;

grant all on all tables in schema public to service_role;
grant all on all sequences in schema public to service_role;
grant execute on all functions in schema public to service_role;

-- Tables created by later migrations start invisible to the API roles and fully open to
-- service_role; each migration grants what users need explicitly.
alter default privileges in schema public revoke all on tables from public, anon, authenticated;
alter default privileges in schema public revoke all on sequences from public, anon, authenticated;
alter default privileges in schema public grant all on tables to service_role;
alter default privileges in schema public grant all on sequences to service_role;
alter default privileges in schema public grant execute on functions to service_role;

-- Rows a dashboard insert omits belong to the signed-in user.
alter table public.support_tickets alter column account_id set default auth.uid();
alter table public.api_keys alter column account_id set default auth.uid();

-- Table and column privileges of `authenticated` --------------------------------------------------

grant select on public.tiers to authenticated;

-- Profile fields only: email follows auth.users, stripe_customer_id and is_admin are billing and
-- administration state.
grant select on public.accounts to authenticated;
grant update (full_name, company_name) on public.accounts to authenticated;

-- Read-only: only the controller, as service role, writes subscriptions from Stripe.
grant select on public.subscriptions to authenticated;

-- A user may pause and resume their own instance: desired_state is an override that can only
-- LOWER what billing allows, so a user cannot obtain more than they pay for through it, and the
-- policy below limits it to running/stopped (teardown goes through deprovision_instance, which
-- requires a reason and is audited). Placement, status, config, resources and generation are
-- the controller's and the operator's.
grant select on public.instances to authenticated;
grant update (desired_state) on public.instances to authenticated;

grant select on public.usage_metrics to authenticated;
grant select on public.audit_logs to authenticated;

-- Priority and status are support's; priority defaults from the tier by trigger.
grant select on public.support_tickets to authenticated;
grant insert (account_id, instance_id, subject, description) on public.support_tickets to authenticated;
grant update (subject, description) on public.support_tickets to authenticated;

-- A user may request a manual backup; everything after `requested` is the controller's.
grant select on public.instance_backups to authenticated;
grant insert (instance_id, backup_type, component) on public.instance_backups to authenticated;

grant select, delete on public.api_keys to authenticated;
grant insert (account_id, name, key_hash, key_prefix, permissions, expires_at) on public.api_keys to authenticated;
grant update (name, is_active, expires_at) on public.api_keys to authenticated;

-- Functions the dashboard calls; each checks that the user acts for themselves (0004).
grant execute on function
  public.get_user_instance(uuid),
  public.get_all_user_instances(uuid),
  public.has_active_subscription(uuid),
  public.check_user_permission(uuid, text),
  public.check_usage_limits(uuid),
  public.get_billing_metrics(uuid, date, date),
  public.provision_instance(uuid, jsonb),
  public.deprovision_instance(uuid, text),
  public.create_api_key(uuid, text, text[], timestamptz)
to authenticated;

-- Policies (all `to authenticated`; none for anon) -----------------------------------------------
-- `(select auth.uid())` is evaluated once per statement, not once per row.

create policy tiers_read on public.tiers for select to authenticated using (true);

create policy accounts_read_own on public.accounts for select to authenticated
  using (id = (select auth.uid()));
create policy accounts_update_own on public.accounts for update to authenticated
  using (id = (select auth.uid())) with check (id = (select auth.uid()));

create policy subscriptions_read_own on public.subscriptions for select to authenticated
  using (account_id = (select auth.uid()));

create policy instances_read_own on public.instances for select to authenticated
  using (account_id = (select auth.uid()));
-- Only live instances whose teardown was not requested; only running/stopped (or no override).
create policy instances_pause_resume_own on public.instances for update to authenticated
  using (account_id = (select auth.uid())
         and status <> 'deprovisioned'
         and desired_state is distinct from 'deprovisioned')
  with check (account_id = (select auth.uid())
              and (desired_state is null or desired_state in ('running', 'stopped')));

create policy usage_metrics_read_own on public.usage_metrics for select to authenticated
  using (account_id = (select auth.uid()));

create policy audit_logs_read_own on public.audit_logs for select to authenticated
  using (account_id = (select auth.uid()));

create policy support_tickets_read_own on public.support_tickets for select to authenticated
  using (account_id = (select auth.uid()));
create policy support_tickets_create_own on public.support_tickets for insert to authenticated
  with check (account_id = (select auth.uid())
              and (instance_id is null
                   or exists (select 1 from public.instances i
                               where i.id = instance_id and i.account_id = (select auth.uid()))));
create policy support_tickets_update_own on public.support_tickets for update to authenticated
  using (account_id = (select auth.uid())) with check (account_id = (select auth.uid()));

create policy instance_backups_read_own on public.instance_backups for select to authenticated
  using (exists (select 1 from public.instances i
                  where i.id = instance_id and i.account_id = (select auth.uid())));
create policy instance_backups_request_own on public.instance_backups for insert to authenticated
  with check (status = 'requested'
              and backup_type = 'manual'
              and exists (select 1 from public.instances i
                           where i.id = instance_id and i.account_id = (select auth.uid())
                             and i.status <> 'deprovisioned'));

create policy api_keys_manage_own on public.api_keys for all to authenticated
  using (account_id = (select auth.uid())) with check (account_id = (select auth.uid()));

-- stripe_events, dokku_hosts, instance_operations, health_checks, notifications,
-- controller_leases (and schema_migrations): RLS on, no policy, no grant: the controller's alone.
