-- 0007: tenant boundaries (issue 14).
--
-- Contracts:
-- * Nothing a tenant writes reaches a host. What the controller deploys beyond the template and
--   the tier (an image, extra environment) is the operator's: `instance_overrides`, one row per
--   instance, with no privilege and no policy for `anon`/`authenticated`. `instances.config` stays
--   the product's own settings (agents, model, ...): the controller never reads it, and it may not
--   carry a `components` key, so nobody can mistake it for the overrides again.
-- * Functions are deny-by-default for good. PostgreSQL grants EXECUTE on every new function to
--   PUBLIC through a GLOBAL default privilege, which a per-schema `revoke ... from public` (0001)
--   cannot remove; and Supabase adds a per-schema default granting ALL to `anon` and
--   `authenticated`. Both are revoked below for objects the migrating role creates, and every
--   function that exists now is re-reviewed: `anon` may execute none, `authenticated` exactly the
--   list at the end of this file. Each later migration grants its new functions explicitly.
-- * Email is an identity only once confirmed: the sign-up trigger creates an account for a
--   confirmed email only (on insert, or when the confirmation arrives), and the Stripe mapping
--   links a customer by email only to an account whose email is not an unconfirmed sign-up.
-- * Functions a tenant calls answer an id they may not see exactly like an id that does not exist
--   (no existence oracle), and tenant writes are bounded per account (`tenant_quotas`).

-- Default privileges ------------------------------------------------------------------------------

alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon, authenticated;
alter default privileges in schema public revoke all on tables from public, anon, authenticated;
alter default privileges in schema public revoke all on sequences from public, anon, authenticated;
alter default privileges in schema public grant execute on functions to service_role;

-- Operator overrides ----------------------------------------------------------------------------

-- The shape of `instance_overrides.components`, checked in SQL so no writer can store a value the
-- controller would refuse: {"matrix"|"backend"|"frontend": {"image"?: text, "env"?: {KEY: text}}}.
-- The controller checks it again (src/reconciler/template.ts) and allows only images from
-- IMAGE_ALLOWLIST.
create function public.valid_component_overrides(p jsonb) returns boolean
  language sql immutable
  set search_path = ''
as $$
  select jsonb_typeof(p) = 'object'
     and not exists (
       select 1 from jsonb_each(p) c
        where c.key not in ('matrix', 'backend', 'frontend')
           or jsonb_typeof(c.value) <> 'object'
           or exists (select 1 from jsonb_object_keys(c.value) k where k not in ('image', 'env'))
           or (c.value ? 'image' and (jsonb_typeof(c.value -> 'image') <> 'string'
                                      or length(c.value ->> 'image') not between 1 and 255
                                      or (c.value ->> 'image') !~ '^[A-Za-z0-9._/:@+-]+$'))
           or (c.value ? 'env' and (jsonb_typeof(c.value -> 'env') <> 'object'
               or exists (select 1 from jsonb_each(c.value -> 'env') e
                           where e.key !~ '^[A-Z][A-Z0-9_]{0,63}$'
                              or jsonb_typeof(e.value) <> 'string'
                              or length(e.value #>> '{}') > 4096))))
$$;

create table public.instance_overrides (
  instance_id uuid primary key references public.instances (id) on delete cascade,
  components jsonb not null default '{}'::jsonb
    constraint instance_overrides_components_valid check (public.valid_component_overrides(components)),
  reason text not null check (length(btrim(reason)) between 1 and 500),
  updated_by text not null default public.current_actor(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

alter table public.instance_overrides enable row level security;
revoke all on public.instance_overrides from public, anon, authenticated;
grant all on public.instance_overrides to service_role;

create trigger instance_overrides_set_updated_at
  before update on public.instance_overrides
  for each row execute function public.set_updated_at();

-- Overrides feed desired state: any change bumps the instance's generation (and so NOTIFY) and is
-- audited with who changed it and why.
create function public.instance_overrides_after_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  v_instance_id uuid := case when tg_op = 'DELETE' then old.instance_id else new.instance_id end;
  v_account_id uuid;
begin
  update public.instances set generation = generation + 1 where id = v_instance_id
  returning account_id into v_account_id;
  if v_account_id is not null then
    perform public.audit(v_account_id, v_instance_id, 'instance_overrides_' || lower(tg_op), 'instance',
      jsonb_build_object('reason', case when tg_op = 'DELETE' then old.reason else new.reason end,
                         'components', case when tg_op = 'DELETE' then '[]'::jsonb
                                            else (select coalesce(jsonb_agg(k order by k), '[]'::jsonb)
                                                    from jsonb_object_keys(new.components) k) end));
  end if;
  return null;
end
$$;

create trigger instance_overrides_after_write
  after insert or update or delete on public.instance_overrides
  for each row execute function public.instance_overrides_after_write();

-- Existing overrides move out of the tenant-writable column, then the column refuses them.
insert into public.instance_overrides (instance_id, components, reason)
select id, config -> 'components', 'moved from instances.config by migration 0007'
  from public.instances
 where config ? 'components'
   and jsonb_typeof(config -> 'components') = 'object'
   and public.valid_component_overrides(config -> 'components');
update public.instances set config = config - 'components' where config ? 'components';
alter table public.instances
  add constraint instances_config_product_only check (not config ? 'components');

-- Confirmed emails --------------------------------------------------------------------------------

-- Supabase Auth has email_confirmed_at; the stand-in auth.users of 0001 gets it (only when 0001
-- created that table: on Supabase the column exists and the table is not ours to alter).
do $$
begin
  if not exists (select 1 from information_schema.columns
                  where table_schema = 'auth' and table_name = 'users' and column_name = 'email_confirmed_at') then
    alter table auth.users add column email_confirmed_at timestamptz;
  end if;
end
$$;

create or replace function public.handle_new_auth_user() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.email is not null and new.email_confirmed_at is not null then
    insert into public.accounts (id, email, full_name)
    values (new.id, new.email, nullif(new.raw_user_meta_data ->> 'full_name', ''))
    on conflict do nothing;
  end if;
  return new;
end
$$;

create trigger on_auth_user_confirmed_mindroom
  after update of email_confirmed_at on auth.users
  for each row
  when (old.email_confirmed_at is null and new.email_confirmed_at is not null)
  execute function public.handle_new_auth_user();

-- True unless the account is a sign-up whose email is not confirmed (an account the billing side
-- created has no auth user, and its email came from Stripe).
create function public.account_email_trusted(p_account_id uuid) returns boolean
  language sql stable security definer
  set search_path = ''
as $$
  select not exists (select 1 from auth.users u where u.id = p_account_id and u.email_confirmed_at is null)
$$;

-- No existence oracle -----------------------------------------------------------------------------

-- The instance, after checking that the caller may act for its account. A signed-in user gets
-- the same "unknown instance" for another account's id as for an id that does not exist.
create or replace function public.require_instance(p_instance_id uuid) returns public.instances
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_role text := public.request_role();
  v public.instances;
begin
  if p_instance_id is null then
    raise exception 'instance id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  if v_role = 'anon' then
    raise exception 'permission denied: sign in first' using errcode = 'insufficient_privilege';
  end if;
  select * into v from public.instances
   where id = p_instance_id and (v_role <> 'authenticated' or account_id = auth.uid());
  if not found then
    raise exception 'unknown instance %', p_instance_id using errcode = 'no_data_found';
  end if;
  perform public.assert_may_act_for(v.account_id);
  return v;
end
$$;

-- Per-account limits on tenant writes -------------------------------------------------------------

-- Operator-tunable: how many writes of a kind one account may make per window.
create table public.tenant_quotas (
  name text primary key,
  max_count int not null check (max_count >= 0),
  per interval not null check (per > interval '0'),
  description text not null
);
alter table public.tenant_quotas enable row level security;
revoke all on public.tenant_quotas from public, anon, authenticated;
grant all on public.tenant_quotas to service_role;

insert into public.tenant_quotas (name, max_count, per, description) values
  ('support_tickets', 10, interval '1 day', 'support tickets'),
  ('api_keys', 10, interval '1 day', 'API keys created'),
  ('desired_state_changes', 20, interval '1 hour', 'desired-state changes (pause, resume, teardown)');

-- Raises SQLSTATE PT429 (PostgREST answers HTTP 429) when `p_account_id` already made `p_used`
-- writes of quota `p_name` in its window. Only tenants are limited: the operator, the controller
-- and service_role are not. Callers count under `lock_tenant_quota`, so concurrent writes of one
-- account cannot both pass the last free slot.
create function public.assert_tenant_quota(p_name text, p_account_id uuid, p_used bigint) returns void
  language plpgsql stable
  set search_path = ''
as $$
declare
  q public.tenant_quotas;
begin
  select * into q from public.tenant_quotas where name = p_name;
  if not found then
    raise exception 'unknown tenant quota %', p_name using errcode = 'invalid_parameter_value';
  end if;
  if p_used >= q.max_count then
    raise exception 'too many %: at most % per account per %', q.description, q.max_count, q.per
      using errcode = 'PT429', hint = 'try again later, or ask support to raise the limit';
  end if;
end
$$;

create function public.tenant_quota_window(p_name text) returns timestamptz
  language sql stable
  set search_path = ''
as $$
  select now() - coalesce((select per from public.tenant_quotas where name = p_name), interval '1 day')
$$;

create function public.lock_tenant_quota(p_name text, p_account_id uuid) returns void
  language sql volatile
  set search_path = ''
as $$
  select pg_advisory_xact_lock(hashtext('tenant_quota:' || p_name), hashtext(p_account_id::text))
$$;

create function public.is_tenant_request() returns boolean
  language sql stable
  set search_path = ''
as $$
  select public.request_role() in ('anon', 'authenticated')
$$;

-- Tenant inserts into a table with `account_id` and `created_at`, counted against the quota named
-- by the trigger's argument (the rows of the window are the ones counted).
create function public.tenant_insert_quota() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_quota text := tg_argv[0];
  v_used bigint;
begin
  if public.is_tenant_request() then
    perform public.lock_tenant_quota(v_quota, new.account_id);
    execute format('select count(*) from public.%I where account_id = $1 and created_at > $2', tg_table_name)
      into v_used using new.account_id, public.tenant_quota_window(v_quota);
    perform public.assert_tenant_quota(v_quota, new.account_id, v_used);
  end if;
  return new;
end
$$;

create trigger support_tickets_quota
  before insert on public.support_tickets
  for each row execute function public.tenant_insert_quota('support_tickets');

create trigger api_keys_quota
  before insert on public.api_keys
  for each row execute function public.tenant_insert_quota('api_keys');

-- A tenant's change of desired_state (pause, resume, deprovision_instance) is counted and audited;
-- the audit row is also what the quota counts.
create function public.instances_desired_state_quota() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if public.is_tenant_request() and new.desired_state is distinct from old.desired_state then
    perform public.lock_tenant_quota('desired_state_changes', new.account_id);
    perform public.assert_tenant_quota('desired_state_changes', new.account_id,
      (select count(*) from public.audit_logs
        where account_id = new.account_id and action = 'instance_desired_state_changed'
          and created_at > public.tenant_quota_window('desired_state_changes')));
    perform public.audit(new.account_id, new.id, 'instance_desired_state_changed', 'instance',
                         jsonb_build_object('from', old.desired_state, 'to', new.desired_state));
  end if;
  return new;
end
$$;

create trigger instances_desired_state_quota
  before update of desired_state on public.instances
  for each row execute function public.instances_desired_state_quota();

-- provision_instance: product settings only, no oracle ----------------------------------------------

-- Inserts the instance row of a subscription (desired state only; the controller provisions it)
-- with a generated subdomain `mr-<8 hex>`, and returns its id. p_config is the product's settings
-- (a JSON object of at most 16 KiB, NULL = {}); it never reaches a host, and `components` is
-- refused: image and environment are the operator's (instance_overrides). Refused while the
-- subscription has a live instance, and for subscriptions that cannot run one.
create or replace function public.provision_instance(p_subscription_id uuid, p_config jsonb default '{}'::jsonb)
  returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_role text := public.request_role();
  v_sub public.subscriptions;
  v_live uuid;
  v_id uuid;
  v_subdomain text;
  v_constraint text;
begin
  if p_subscription_id is null then
    raise exception 'subscription id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  if v_role = 'anon' then
    raise exception 'permission denied: sign in first' using errcode = 'insufficient_privilege';
  end if;
  if p_config is not null and jsonb_typeof(p_config) <> 'object' then
    raise exception 'config must be a JSON object, not %', jsonb_typeof(p_config)
      using errcode = 'invalid_parameter_value';
  end if;
  if p_config ? 'components' then
    raise exception 'config.components is not a tenant setting: images and environment are chosen by the operator'
      using errcode = 'insufficient_privilege';
  end if;
  if octet_length(coalesce(p_config, '{}'::jsonb)::text) > 16384 then
    raise exception 'config is larger than 16 KiB' using errcode = 'program_limit_exceeded';
  end if;
  -- The row lock serialises concurrent calls for one subscription.
  select * into v_sub from public.subscriptions
   where id = p_subscription_id and (v_role <> 'authenticated' or account_id = auth.uid())
   for update;
  if not found then
    raise exception 'unknown subscription %', p_subscription_id using errcode = 'no_data_found';
  end if;
  perform public.assert_may_act_for(v_sub.account_id);
  if v_sub.status in ('incomplete', 'incomplete_expired', 'canceled') then
    raise exception 'subscription % is %: it cannot have an instance', p_subscription_id, v_sub.status
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  select id into v_live from public.instances
   where subscription_id = p_subscription_id and status <> 'deprovisioned';
  if found then
    raise exception 'subscription % already has a live instance %', p_subscription_id, v_live
      using errcode = 'unique_violation';
  end if;

  for attempt in 1..10 loop
    v_subdomain := 'mr-' || substr(md5(gen_random_uuid()::text), 1, 8);
    begin
      insert into public.instances (subscription_id, account_id, subdomain, config)
      values (p_subscription_id, v_sub.account_id, v_subdomain, coalesce(p_config, '{}'::jsonb))
      returning id into v_id;
      exit;
    exception when unique_violation then
      get stacked diagnostics v_constraint = constraint_name;
      if v_constraint is distinct from 'instances_subdomain_key' then
        raise exception 'subscription % already has a live instance', p_subscription_id
          using errcode = 'unique_violation';
      end if;
    end;
  end loop;
  if v_id is null then
    raise exception 'could not generate a free subdomain' using errcode = 'unique_violation';
  end if;

  perform public.audit(v_sub.account_id, v_id, 'instance_provision_requested', 'instance',
                       jsonb_build_object('subscription_id', p_subscription_id, 'subdomain', v_subdomain));
  return v_id;
end
$$;

-- Function privileges, reviewed -----------------------------------------------------------------

-- Every function of this schema (not an extension's) starts closed to PUBLIC, anon and
-- authenticated, and open to service_role; then exactly the dashboard's functions are granted.
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p
            where p.pronamespace = 'public'::regnamespace
              and not exists (select 1 from pg_depend d
                               where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e') loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to service_role', f);
  end loop;
end
$$;

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
