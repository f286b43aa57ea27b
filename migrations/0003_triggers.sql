-- 0003: triggers.
--
-- Contracts (the controller relies on each):
-- * `updated_at` is set on every UPDATE of a table that has it.
-- * instances.generation increases by one whenever anything that feeds desired state changes:
--   the instance's desired_state, reconcile_paused, config, host_id, subdomain, resource limits,
--   or its subscription's status, tier, limits, features, past_due_since, canceled_at or region.
--   It never decreases. Status writes by the controller (status, health, observed_generation,
--   conditions, URLs, timestamps) leave it alone.
-- * NOTIFY mindroom_reconcile, payload = subscription id as text, is sent exactly when a change
--   could change desired state: an insert or delete of a subscription or instance, a generation
--   bump, a subscription change listed above, a backup request. Never on the controller's own
--   status writes, so writing status cannot wake the controller into a loop. Postgres folds
--   identical notifications of one transaction into one.
-- * Subscriptions take limits and features from `tiers` on insert and on every tier change;
--   a live instance's memory/cpu follow the tier too.
-- * Every subscription status change (and the initial status) is audited (category `billing`).
-- * instance_operations rows can only be written with the current epoch of the `reconciler`
--   lease: a stale leader is fenced (SQLSTATE MR001).
--
-- Functions that write other tables are SECURITY DEFINER with an empty search_path, because they
-- also run for users whose own privileges end at their row (e.g. a ticket needs the tier).

-- updated_at --------------------------------------------------------------------------------------

create function public.set_updated_at() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['tiers', 'accounts', 'subscriptions', 'dokku_hosts', 'instances',
                           'usage_metrics', 'support_tickets', 'instance_backups'] loop
    execute format(
      'create trigger %I before update on public.%I for each row execute function public.set_updated_at()',
      t || '_set_updated_at', t);
  end loop;
end
$$;

-- Who did it, for audit rows written by triggers: the controller may name itself with
-- `set_config('mindroom.actor', 'controller', true)`; a dashboard user is `user:<uid>`.
create function public.current_actor() returns text
  language sql stable
  set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('mindroom.actor', true), ''),
    'user:' || auth.uid()::text,
    session_user::text
  )
$$;

-- Sign-up: an account row for every auth user (Supabase's documented handle_new_user pattern).
create function public.handle_new_auth_user() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.email is not null then
    insert into public.accounts (id, email, full_name)
    values (new.id, new.email, nullif(new.raw_user_meta_data ->> 'full_name', ''))
    on conflict do nothing;
  end if;
  return new;
end
$$;

create trigger on_auth_user_created_mindroom
  after insert on auth.users
  for each row execute function public.handle_new_auth_user();

-- Subscriptions ---------------------------------------------------------------------------------

-- Limits, features and status-derived timestamps, before the row is written.
create function public.subscriptions_before_write() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  t public.tiers%rowtype;
begin
  if tg_op = 'INSERT' or new.tier is distinct from old.tier then
    select * into t from public.tiers where name = new.tier;
    if not found then
      raise exception 'tier % has no row in tiers', new.tier using errcode = 'foreign_key_violation';
    end if;
    new.max_agents := t.max_agents;
    new.max_messages_per_day := t.max_messages_per_day;
    new.max_storage_gb := t.max_storage_gb;
    new.max_platforms := t.max_platforms;
    new.max_team_members := t.max_team_members;
    new.features := t.features;
  end if;

  if tg_op = 'INSERT' or new.status is distinct from old.status then
    if new.status = 'past_due' then
      new.past_due_since := coalesce(new.past_due_since, now());
    else
      new.past_due_since := null; -- leaving past_due ends the grace clock
    end if;
    if new.status = 'canceled' then
      new.canceled_at := coalesce(new.canceled_at, now());
    end if;
  end if;
  return new;
end
$$;

create trigger subscriptions_before_write
  before insert or update on public.subscriptions
  for each row execute function public.subscriptions_before_write();

-- True when the change can move the desired state of the subscription's instance.
create function public.subscription_feeds_changed(o public.subscriptions, n public.subscriptions)
  returns boolean
  language sql immutable
  set search_path = ''
as $$
  select (o.status, o.tier, o.max_agents, o.max_messages_per_day, o.max_storage_gb,
          o.max_platforms, o.max_team_members, o.features, o.past_due_since, o.canceled_at, o.region)
    is distinct from
         (n.status, n.tier, n.max_agents, n.max_messages_per_day, n.max_storage_gb,
          n.max_platforms, n.max_team_members, n.features, n.past_due_since, n.canceled_at, n.region)
$$;

create function public.subscriptions_after_write() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  t public.tiers%rowtype;
begin
  if tg_op = 'DELETE' then
    perform pg_notify('mindroom_reconcile', old.id::text);
    return old;
  end if;

  if tg_op = 'INSERT' or new.status is distinct from old.status then
    insert into public.audit_logs (account_id, action, action_category, details, actor)
    values (new.account_id, 'subscription_status_changed', 'billing',
            jsonb_build_object('subscription_id', new.id,
                               'stripe_subscription_id', new.stripe_subscription_id,
                               'from', case when tg_op = 'INSERT' then null else old.status::text end,
                               'to', new.status::text,
                               'tier', new.tier::text),
            public.current_actor());
  end if;

  if tg_op = 'INSERT' then
    perform pg_notify('mindroom_reconcile', new.id::text);
  elsif public.subscription_feeds_changed(old, new) then
    if new.tier is distinct from old.tier then
      select * into t from public.tiers where name = new.tier;
      update public.instances
         set memory_limit_mb = t.memory_mb, cpu_limit = t.cpus, generation = generation + 1
       where subscription_id = new.id and status <> 'deprovisioned';
    else
      update public.instances set generation = generation + 1
       where subscription_id = new.id and status <> 'deprovisioned';
    end if;
    perform pg_notify('mindroom_reconcile', new.id::text);
  end if;
  return new;
end
$$;

create trigger subscriptions_after_write
  after insert or update or delete on public.subscriptions
  for each row execute function public.subscriptions_after_write();

-- Instances -------------------------------------------------------------------------------------

create function public.instances_before_insert() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  s record;
begin
  select sub.account_id, t.memory_mb, t.cpus into s
    from public.subscriptions sub join public.tiers t on t.name = sub.tier
   where sub.id = new.subscription_id;
  if not found then
    raise exception 'unknown subscription %', new.subscription_id using errcode = 'foreign_key_violation';
  end if;
  new.account_id := coalesce(new.account_id, s.account_id); -- a mismatch fails the composite FK
  new.memory_limit_mb := coalesce(new.memory_limit_mb, s.memory_mb);
  new.cpu_limit := coalesce(new.cpu_limit, s.cpus);
  if new.desired_state is not null then
    new.desired_state_changed_at := now();
  end if;
  return new;
end
$$;

create trigger instances_before_insert
  before insert on public.instances
  for each row execute function public.instances_before_insert();

create function public.instances_before_update() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if new.generation < old.generation then
    raise exception 'instance % generation may not decrease (% -> %)', old.id, old.generation, new.generation
      using errcode = 'check_violation';
  end if;
  if (old.desired_state, old.reconcile_paused, old.config, old.host_id, old.subdomain,
      old.memory_limit_mb, old.cpu_limit, old.subscription_id)
     is distinct from
     (new.desired_state, new.reconcile_paused, new.config, new.host_id, new.subdomain,
      new.memory_limit_mb, new.cpu_limit, new.subscription_id)
     and new.generation = old.generation then
    new.generation := old.generation + 1;
  end if;
  if new.desired_state is distinct from old.desired_state then
    new.desired_state_changed_at := now();
  end if;

  -- Lifecycle timestamps follow the observed status unless the writer set them itself.
  if new.status is distinct from old.status then
    case new.status
      when 'running' then
        new.provisioned_at := coalesce(new.provisioned_at, now());
      when 'stopped' then
        if new.stopped_at is not distinct from old.stopped_at then
          new.stopped_at := now();
        end if;
      when 'deprovisioned' then
        new.deprovisioned_at := coalesce(new.deprovisioned_at, now());
      else
        null; -- pending, provisioning, stopping, deprovisioning, failed, error: nothing to stamp
    end case;
  end if;
  return new;
end
$$;

create trigger instances_before_update
  before update on public.instances
  for each row execute function public.instances_before_update();

create function public.instances_after_write() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    perform pg_notify('mindroom_reconcile', old.subscription_id::text);
    return old;
  end if;
  if tg_op = 'INSERT' or new.generation <> old.generation then
    perform pg_notify('mindroom_reconcile', new.subscription_id::text);
    if tg_op = 'UPDATE' and new.subscription_id <> old.subscription_id then
      perform pg_notify('mindroom_reconcile', old.subscription_id::text);
    end if;
  end if;
  return new;
end
$$;

create trigger instances_after_write
  after insert or update or delete on public.instances
  for each row execute function public.instances_after_write();

-- Usage metrics ---------------------------------------------------------------------------------

create function public.usage_metrics_fill_account() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.account_id is null then
    select account_id into new.account_id from public.instances where id = new.instance_id;
  end if;
  return new;
end
$$;

create trigger usage_metrics_fill_account
  before insert on public.usage_metrics
  for each row execute function public.usage_metrics_fill_account();

-- Support tickets -------------------------------------------------------------------------------

-- Priority from the account's best entitled plan: `priority_support` gets `high`, others `normal`.
create function public.support_tickets_default_priority() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.priority is null then
    new.priority := case
      when exists (
        select 1 from public.subscriptions s
         where s.account_id = new.account_id
           and s.status in ('trialing', 'active', 'past_due')
           and coalesce((s.features ->> 'priority_support')::boolean, false)
      ) then 'high'::public.ticket_priority
      else 'normal'::public.ticket_priority
    end;
  end if;
  if new.status in ('resolved', 'closed') and new.resolved_at is null then
    new.resolved_at := now();
  end if;
  return new;
end
$$;

create trigger support_tickets_default_priority
  before insert or update on public.support_tickets
  for each row execute function public.support_tickets_default_priority();

-- Backups ---------------------------------------------------------------------------------------

-- A requested backup is work for the controller: wake the instance's key.
create function public.instance_backups_notify() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_subscription uuid;
begin
  if new.status = 'requested' then
    select subscription_id into v_subscription from public.instances where id = new.instance_id;
    if v_subscription is not null then
      perform pg_notify('mindroom_reconcile', v_subscription::text);
    end if;
  end if;
  return new;
end
$$;

create trigger instance_backups_notify
  after insert on public.instance_backups
  for each row execute function public.instance_backups_notify();

-- Leader fencing --------------------------------------------------------------------------------

-- A journal write must carry the current epoch of the `reconciler` lease. FOR SHARE holds the
-- lease row until this transaction ends, so a takeover (which bumps the epoch with an UPDATE)
-- waits for an in-flight journal write instead of racing it: once the new epoch is committed,
-- every write of the old leader fails with SQLSTATE MR001.
-- A new leader that marks a crashed leader's pending rows `unknown` writes its own epoch on them.
create function public.instance_operations_fence() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_epoch bigint;
begin
  select epoch into v_epoch from public.controller_leases where name = 'reconciler' for share;
  if not found then
    raise exception 'stale leader: no reconciler lease exists, epoch % cannot be current', new.epoch
      using errcode = 'MR001';
  end if;
  if new.epoch is distinct from v_epoch then
    raise exception 'stale leader: epoch % is not the current lease epoch %', new.epoch, v_epoch
      using errcode = 'MR001',
            hint = 'this process lost leadership; stop acting and re-acquire the lease';
  end if;
  return new;
end
$$;

create trigger instance_operations_fence
  before insert or update on public.instance_operations
  for each row execute function public.instance_operations_fence();
