-- 0004: the product's SQL functions (DESIGN.md section 4) and their helpers.
--
-- Contracts:
-- * Every function either does its job or raises a clear error naming the bad argument
--   (no_data_found for unknown ids, null_value_not_allowed / invalid_parameter_value for bad
--   arguments, insufficient_privilege for another user's data). No CASE without ELSE; every
--   aggregate is plain SQL over rows (distinct jsonb keys are counted through a lateral join).
-- * All are SECURITY DEFINER with an empty search_path (every name is schema-qualified), because
--   they read across tables a user cannot see directly. Those the dashboard may call as
--   `authenticated` (granted in 0005) check that the signed-in user acts for themselves;
--   service_role, the controller's own login and superusers act for anyone.
-- * provision_instance and deprovision_instance only change desired state; the controller does
--   the work and reports it in status columns.
-- * "Today" is the UTC day.

-- Helpers ---------------------------------------------------------------------------------------

-- The role the request runs as: SET ROLE survives SECURITY DEFINER (only current_user changes),
-- so this is `authenticated`/`anon` for PostgREST and test sessions, else the login role.
create function public.request_role() returns text
  language sql stable
  set search_path = ''
as $$
  select coalesce(nullif(current_setting('role', true), 'none'), session_user::text)
$$;

-- Raises unless the caller may act for p_user_id: anon never; authenticated only for auth.uid().
create function public.assert_may_act_for(p_user_id uuid) returns void
  language plpgsql stable
  set search_path = ''
as $$
declare
  v_role text := public.request_role();
begin
  if p_user_id is null then
    raise exception 'user id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  if v_role = 'anon' then
    raise exception 'permission denied: sign in first' using errcode = 'insufficient_privilege';
  end if;
  if v_role = 'authenticated' and p_user_id is distinct from auth.uid() then
    raise exception 'permission denied: a user may only act for their own account'
      using errcode = 'insufficient_privilege';
  end if;
end
$$;

create function public.require_account(p_user_id uuid) returns void
  language plpgsql stable
  set search_path = ''
as $$
begin
  perform public.assert_may_act_for(p_user_id);
  if not exists (select 1 from public.accounts where id = p_user_id) then
    raise exception 'unknown account %', p_user_id using errcode = 'no_data_found';
  end if;
end
$$;

-- The instance, after checking that the caller may act for its account.
create function public.require_instance(p_instance_id uuid) returns public.instances
  language plpgsql stable
  set search_path = ''
as $$
declare
  v public.instances;
begin
  if p_instance_id is null then
    raise exception 'instance id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  select * into v from public.instances where id = p_instance_id;
  if not found then
    raise exception 'unknown instance %', p_instance_id using errcode = 'no_data_found';
  end if;
  perform public.assert_may_act_for(v.account_id);
  return v;
end
$$;

-- {"a": 1} + "a" -> {"a": 2}; a NULL key leaves the object unchanged.
create function public.jsonb_increment(p_counters jsonb, p_key text, p_by bigint default 1) returns jsonb
  language sql immutable
  set search_path = ''
as $$
  select case
    when p_key is null then coalesce(p_counters, '{}'::jsonb)
    else coalesce(p_counters, '{}'::jsonb)
         || jsonb_build_object(p_key, coalesce((p_counters ->> p_key)::bigint, 0) + p_by)
  end
$$;

create function public.utc_today() returns date
  language sql stable
  set search_path = ''
as $$
  select (now() at time zone 'utc')::date
$$;

-- {"used": u, "limit": l, "remaining": r}; NULL limit = unlimited (remaining NULL too).
create function public.limit_entry(p_used bigint, p_limit bigint) returns jsonb
  language sql immutable
  set search_path = ''
as $$
  select jsonb_build_object(
    'used', p_used,
    'limit', p_limit,
    'remaining', case when p_limit is null then null else greatest(p_limit - p_used, 0) end
  )
$$;

create function public.audit(p_account_id uuid, p_instance_id uuid, p_action text, p_category text,
                             p_details jsonb) returns void
  language sql
  set search_path = ''
as $$
  insert into public.audit_logs (account_id, instance_id, action, action_category, details, actor)
  values (p_account_id, p_instance_id, p_action, p_category, coalesce(p_details, '{}'::jsonb),
          public.current_actor())
$$;

-- Reads (dashboard) -----------------------------------------------------------------------------

-- The user's current instance: the newest live one, a running one first. Zero or one row.
create function public.get_user_instance(p_user_id uuid) returns setof public.instances
  language plpgsql stable security definer
  set search_path = ''
  rows 1
as $$
begin
  perform public.require_account(p_user_id);
  return query
    select i.* from public.instances i
     where i.account_id = p_user_id and i.status <> 'deprovisioned'
     order by (i.status = 'running') desc, i.created_at desc, i.id
     limit 1;
end
$$;

-- Every instance the user ever had, newest first.
create function public.get_all_user_instances(p_user_id uuid) returns setof public.instances
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  perform public.require_account(p_user_id);
  return query
    select i.* from public.instances i
     where i.account_id = p_user_id
     order by i.created_at desc, i.id;
end
$$;

-- True when the user has a subscription in Stripe's `active` or `trialing` state.
create function public.has_active_subscription(p_user_id uuid) returns boolean
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  perform public.require_account(p_user_id);
  return exists (
    select 1 from public.subscriptions s
     where s.account_id = p_user_id and s.status in ('active', 'trialing')
  );
end
$$;

-- May the user use a feature? Admins may use everything; others need an entitled subscription
-- (trialing, active, or past_due while its grace runs) whose features grant it. The permission
-- must be a feature some tier knows, so a typo raises instead of silently answering false.
create function public.check_user_permission(p_user_id uuid, p_permission text) returns boolean
  language plpgsql stable security definer
  set search_path = ''
as $$
begin
  perform public.require_account(p_user_id);
  if p_permission is null or not exists (select 1 from public.tiers where features ? p_permission) then
    raise exception 'unknown permission %', coalesce(quote_literal(p_permission), 'NULL')
      using errcode = 'invalid_parameter_value',
            hint = 'permissions are the feature names of the tiers table';
  end if;
  return exists (select 1 from public.accounts where id = p_user_id and is_admin)
      or exists (
        select 1 from public.subscriptions s
         where s.account_id = p_user_id
           and s.status in ('trialing', 'active', 'past_due')
           and coalesce((s.features ->> p_permission)::boolean, false)
      );
end
$$;

-- Usage -----------------------------------------------------------------------------------------

-- Where usage stands against the subscription's limits:
-- {"instance_id", "tier", "within_limits": bool, "exceeded": ["messages_per_day", ...],
--  "limits": {"messages_per_day"|"agents"|"platforms"|"storage_bytes": {"used","limit","remaining"}}}
-- A limit is exceeded when used > limit; NULL limit = unlimited.
create function public.check_usage_limits(p_instance_id uuid) returns jsonb
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_instance public.instances := public.require_instance(p_instance_id);
  v_sub public.subscriptions;
  v_today public.usage_metrics;
  v_messages bigint;
  v_storage bigint;
  v_limits jsonb;
begin
  select * into v_sub from public.subscriptions where id = v_instance.subscription_id;
  select * into v_today from public.usage_metrics
   where instance_id = p_instance_id and date = public.utc_today();
  v_messages := case
    when v_sub.usage_reset_at < (public.utc_today()::timestamp at time zone 'utc') then 0
    else v_sub.messages_today
  end;
  select coalesce((select storage_bytes from public.usage_metrics
                    where instance_id = p_instance_id and storage_bytes is not null
                    order by date desc limit 1), 0)
    into v_storage;
  v_limits := jsonb_build_object(
    'messages_per_day', public.limit_entry(v_messages, v_sub.max_messages_per_day),
    'agents', public.limit_entry(coalesce(v_today.agents_used, 0), v_sub.max_agents),
    'platforms', public.limit_entry(
      (select count(*) from jsonb_object_keys(coalesce(v_today.platforms_active, '{}'::jsonb))),
      v_sub.max_platforms),
    'storage_bytes', public.limit_entry(v_storage, v_sub.max_storage_gb::bigint * 1073741824)
  );
  return jsonb_build_object(
    'instance_id', p_instance_id,
    'tier', v_sub.tier,
    'within_limits', not exists (
      select 1 from jsonb_each(v_limits) e
       where e.value ->> 'limit' is not null and (e.value ->> 'used')::bigint > (e.value ->> 'limit')::bigint),
    'exceeded', coalesce((
      select jsonb_agg(e.key order by e.key) from jsonb_each(v_limits) e
       where e.value ->> 'limit' is not null and (e.value ->> 'used')::bigint > (e.value ->> 'limit')::bigint),
      '[]'::jsonb),
    'limits', v_limits
  );
end
$$;

-- Counts one message of an instance: today's usage row (agent, tool and platform counters), the
-- subscription's messages_today (restarted when the UTC day changed) and instances.last_usage_at.
-- Returns check_usage_limits() after counting, so the caller learns at once if a limit is passed.
create function public.track_usage(p_instance_id uuid, p_agent text, p_tool text default null,
                                   p_platform text default null, p_direction text default 'sent')
  returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_instance public.instances := public.require_instance(p_instance_id);
  v_sent int := case when p_direction = 'sent' then 1 else 0 end;
begin
  if p_agent is null or btrim(p_agent) = '' then
    raise exception 'agent must be a non-empty name' using errcode = 'invalid_parameter_value';
  end if;
  if p_direction is null or p_direction not in ('sent', 'received') then
    raise exception 'direction must be sent or received, not %', coalesce(p_direction, 'NULL')
      using errcode = 'invalid_parameter_value';
  end if;
  if v_instance.status = 'deprovisioned' then
    raise exception 'instance % is deprovisioned', p_instance_id using errcode = 'object_not_in_prerequisite_state';
  end if;

  insert into public.usage_metrics as u
    (instance_id, account_id, date, messages_sent, messages_received, agents, agents_used,
     tools_used, platforms_active)
  values (p_instance_id, v_instance.account_id, public.utc_today(), v_sent, 1 - v_sent,
          jsonb_build_object(p_agent, 1), 1,
          public.jsonb_increment('{}'::jsonb, nullif(p_tool, '')),
          public.jsonb_increment('{}'::jsonb, nullif(p_platform, '')))
  on conflict (instance_id, date) do update set
    messages_sent = u.messages_sent + excluded.messages_sent,
    messages_received = u.messages_received + excluded.messages_received,
    agents = public.jsonb_increment(u.agents, p_agent),
    agents_used = (select count(*)::int from jsonb_object_keys(public.jsonb_increment(u.agents, p_agent))),
    tools_used = public.jsonb_increment(u.tools_used, nullif(p_tool, '')),
    platforms_active = public.jsonb_increment(u.platforms_active, nullif(p_platform, ''));

  update public.subscriptions s
     set messages_today = case
           when s.usage_reset_at < (public.utc_today()::timestamp at time zone 'utc') then 1
           else s.messages_today + 1
         end,
         usage_reset_at = case
           when s.usage_reset_at < (public.utc_today()::timestamp at time zone 'utc') then now()
           else s.usage_reset_at
         end
   where s.id = v_instance.subscription_id;

  update public.instances set last_usage_at = now() where id = p_instance_id;
  return public.check_usage_limits(p_instance_id);
end
$$;

-- Usage of an account over [p_start, p_end] (inclusive UTC dates), totals and per instance.
create function public.get_billing_metrics(p_account_id uuid, p_start date, p_end date) returns jsonb
  language plpgsql stable security definer
  set search_path = ''
as $$
declare
  v_result jsonb;
begin
  perform public.require_account(p_account_id);
  if p_start is null or p_end is null then
    raise exception 'start and end dates are required' using errcode = 'null_value_not_allowed';
  end if;
  if p_end < p_start then
    raise exception 'end % is before start %', p_end, p_start using errcode = 'invalid_parameter_value';
  end if;

  with usage_rows as (
    select u.* from public.usage_metrics u
     where u.account_id = p_account_id and u.date between p_start and p_end
  )
  select jsonb_build_object(
    'account_id', p_account_id,
    'period_start', p_start,
    'period_end', p_end,
    'days_with_usage', (select count(distinct date) from usage_rows),
    'messages_sent', (select coalesce(sum(messages_sent), 0) from usage_rows),
    'messages_received', (select coalesce(sum(messages_received), 0) from usage_rows),
    'messages_total', (select coalesce(sum(messages_sent + messages_received), 0) from usage_rows),
    'errors', (select coalesce(sum(errors), 0) from usage_rows),
    'distinct_agents', (select count(distinct k) from usage_rows r cross join lateral jsonb_object_keys(r.agents) k),
    'distinct_tools', (select count(distinct k) from usage_rows r cross join lateral jsonb_object_keys(r.tools_used) k),
    'distinct_platforms',
      (select count(distinct k) from usage_rows r cross join lateral jsonb_object_keys(r.platforms_active) k),
    'peak_storage_bytes', (select coalesce(max(storage_bytes), 0) from usage_rows),
    'instances', coalesce((
      select jsonb_agg(jsonb_build_object(
               'instance_id', i.id, 'subdomain', i.subdomain,
               'messages_sent', t.sent, 'messages_received', t.received, 'errors', t.errors)
             order by i.subdomain)
        from (select instance_id, sum(messages_sent) as sent, sum(messages_received) as received,
                     sum(errors) as errors
                from usage_rows group by instance_id) t
        join public.instances i on i.id = t.instance_id), '[]'::jsonb)
  ) into v_result;
  return v_result;
end
$$;

-- Desired state ---------------------------------------------------------------------------------

-- Inserts the instance row of a subscription (desired state only; the controller provisions it)
-- with a generated subdomain `mr-<8 hex>`, and returns its id. Refused while the subscription has
-- a live instance, and for subscriptions that cannot run one (incomplete, incomplete_expired,
-- canceled). p_config must be a JSON object (NULL = {}).
create function public.provision_instance(p_subscription_id uuid, p_config jsonb default '{}'::jsonb)
  returns uuid
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_sub public.subscriptions;
  v_live uuid;
  v_id uuid;
  v_subdomain text;
  v_constraint text;
begin
  if p_subscription_id is null then
    raise exception 'subscription id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  if p_config is not null and jsonb_typeof(p_config) <> 'object' then
    raise exception 'config must be a JSON object, not %', jsonb_typeof(p_config)
      using errcode = 'invalid_parameter_value';
  end if;
  -- The row lock serialises concurrent calls for one subscription.
  select * into v_sub from public.subscriptions where id = p_subscription_id for update;
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

-- Asks the controller to tear the instance down (after its final backup). Returns true when this
-- call changed the desired state, false when teardown was already requested or done.
create function public.deprovision_instance(p_instance_id uuid, p_reason text) returns boolean
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_instance public.instances := public.require_instance(p_instance_id);
begin
  if p_reason is null or btrim(p_reason) = '' then
    raise exception 'a reason is required to deprovision instance %', p_instance_id
      using errcode = 'null_value_not_allowed';
  end if;
  if v_instance.status = 'deprovisioned' or v_instance.desired_state = 'deprovisioned' then
    return false;
  end if;
  update public.instances set desired_state = 'deprovisioned' where id = p_instance_id;
  perform public.audit(v_instance.account_id, p_instance_id, 'instance_deprovision_requested', 'instance',
                       jsonb_build_object('reason', p_reason, 'previous_desired_state', v_instance.desired_state));
  return true;
end
$$;

-- Health (controller) ---------------------------------------------------------------------------

-- Records the aggregate health of an instance and returns the previous value. Entering critical
-- or unreachable, and recovering from them, are audited (category `health`).
create function public.update_instance_health(p_instance_id uuid, p_status text, p_details jsonb default null)
  returns public.health_status
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_instance public.instances := public.require_instance(p_instance_id);
  v_status public.health_status;
begin
  if p_status is null or p_status not in (select unnest(enum_range(null::public.health_status))::text) then
    raise exception 'unknown health status %', coalesce(quote_literal(p_status), 'NULL')
      using errcode = 'invalid_parameter_value',
            hint = 'one of unknown, healthy, degraded, critical, unreachable';
  end if;
  v_status := p_status::public.health_status;
  update public.instances
     set health_status = v_status, health_details = p_details, last_health_check = now()
   where id = p_instance_id;
  if v_status is distinct from v_instance.health_status
     and (v_status in ('critical', 'unreachable') or v_instance.health_status in ('critical', 'unreachable')) then
    perform public.audit(v_instance.account_id, p_instance_id, 'instance_health_changed', 'health',
                         jsonb_build_object('from', v_instance.health_status, 'to', v_status,
                                            'details', p_details));
  end if;
  return v_instance.health_status;
end
$$;

-- Jobs (controller, once per period) ------------------------------------------------------------

-- 00:00 UTC: every subscription's daily message counter restarts. Returns how many were reset.
create function public.reset_daily_usage() returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.subscriptions
     set messages_today = 0, usage_reset_at = now()
   where messages_today <> 0 or usage_reset_at < (public.utc_today()::timestamp at time zone 'utc');
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- Storage of an instance in bytes: the latest measurement in usage_metrics (the controller writes
-- storage_bytes when it measures a volume), else the newest completed backup of each component,
-- else 0. The answer is recorded on today's usage row, so the daily series has no holes.
create function public.calculate_storage_usage(p_instance_id uuid) returns bigint
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_instance public.instances := public.require_instance(p_instance_id);
  v_bytes bigint;
begin
  select storage_bytes into v_bytes from public.usage_metrics
   where instance_id = p_instance_id and storage_bytes is not null
   order by date desc limit 1;
  if v_bytes is null then
    select coalesce(sum(b.size_bytes), 0)::bigint into v_bytes
      from (select distinct on (coalesce(component, '*')) size_bytes
              from public.instance_backups
             where instance_id = p_instance_id and status = 'completed'
             order by coalesce(component, '*'), completed_at desc nulls last, created_at desc) b;
  end if;
  insert into public.usage_metrics (instance_id, account_id, date, storage_bytes)
  values (p_instance_id, v_instance.account_id, public.utc_today(), v_bytes)
  on conflict (instance_id, date) do update set storage_bytes = excluded.storage_bytes;
  return v_bytes;
end
$$;

-- calculate_storage_usage for every live instance; returns how many were measured.
create function public.calculate_all_storage_usage() returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_id uuid;
  v_count integer := 0;
begin
  for v_id in select id from public.instances where status <> 'deprovisioned' order by id loop
    perform public.calculate_storage_usage(v_id);
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- Retention: audit logs 90 days, health checks 30 days, processed/ignored Stripe events 30 days,
-- sent notifications 90 days; completed backups past expires_at become `expired` (the controller
-- then deletes their objects from the store). Returns what it did, per table.
create function public.cleanup_expired_data() returns jsonb
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_audit integer;
  v_health integer;
  v_events integer;
  v_notifications integer;
  v_backups integer;
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
  update public.instance_backups set status = 'expired'
   where status = 'completed' and expires_at < now();
  get diagnostics v_backups = row_count;
  return jsonb_build_object('audit_logs_deleted', v_audit, 'health_checks_deleted', v_health,
                            'stripe_events_deleted', v_events, 'notifications_deleted', v_notifications,
                            'backups_expired', v_backups);
end
$$;

-- Free-tier instances with no usage for 7 days get desired_state = 'stopped'. Activity is the
-- latest of last usage, provisioning, creation and the last change of desired_state (so a user
-- who resumes an instance gets another 7 days). Returns how many were paused; each is audited.
create function public.auto_pause_inactive_instances() returns integer
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v record;
  v_count integer := 0;
begin
  for v in
    select i.id, i.account_id
      from public.instances i
      join public.subscriptions s on s.id = i.subscription_id
     where s.tier = 'free'
       and i.status <> 'deprovisioned'
       and (i.desired_state is null or i.desired_state = 'running')
       and greatest(i.last_usage_at, i.provisioned_at, i.created_at, i.desired_state_changed_at)
           < now() - interval '7 days'
     order by i.id
     for update of i
  loop
    update public.instances set desired_state = 'stopped' where id = v.id;
    perform public.audit(v.account_id, v.id, 'instance_auto_paused', 'instance',
                         jsonb_build_object('reason', 'free tier: no usage for 7 days'));
    v_count := v_count + 1;
  end loop;
  return v_count;
end
$$;

-- API keys --------------------------------------------------------------------------------------

-- Creates a key and returns it in plain text exactly once; only its sha256 is stored.
-- Key: `mr_` + 64 hex characters (two v4 UUIDs' worth of strong randomness); prefix: first 11.
create function public.create_api_key(p_account_id uuid, p_name text,
                                      p_permissions text[] default array['read']::text[],
                                      p_expires_at timestamptz default null)
  returns table (id uuid, api_key text, key_prefix text)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_key text := 'mr_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  v_id uuid;
begin
  perform public.require_account(p_account_id);
  if p_name is null or btrim(p_name) = '' then
    raise exception 'an API key needs a name' using errcode = 'null_value_not_allowed';
  end if;
  if p_permissions is null or cardinality(p_permissions) = 0 then
    raise exception 'an API key needs at least one permission' using errcode = 'invalid_parameter_value';
  end if;
  if p_expires_at is not null and p_expires_at <= now() then
    raise exception 'expiry % is in the past', p_expires_at using errcode = 'invalid_parameter_value';
  end if;
  insert into public.api_keys (account_id, name, key_hash, key_prefix, permissions, expires_at)
  values (p_account_id, p_name, encode(sha256(convert_to(v_key, 'UTF8')), 'hex'), left(v_key, 11),
          p_permissions, p_expires_at)
  returning api_keys.id into v_id;
  perform public.audit(p_account_id, null, 'api_key_created', 'security',
                       jsonb_build_object('api_key_id', v_id, 'name', p_name, 'key_prefix', left(v_key, 11)));
  return query select v_id, v_key, left(v_key, 11);
end
$$;

-- The active, unexpired key with this plain text, or no row; stamps last_used_at. For the API.
create function public.verify_api_key(p_key text)
  returns table (api_key_id uuid, account_id uuid, permissions text[])
  language sql volatile security definer
  set search_path = ''
as $$
  update public.api_keys k set last_used_at = now()
   where k.key_hash = encode(sha256(convert_to(coalesce(p_key, ''), 'UTF8')), 'hex')
     and k.is_active and (k.expires_at is null or k.expires_at > now())
  returning k.id, k.account_id, k.permissions
$$;
