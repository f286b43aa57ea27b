-- 0013: the rest of the emails (issue 11), queued in the outbox where their events happen, so
-- every writer (the controller, Stripe, SQL by support) produces them alike.
--
-- Contracts:
-- * Each notice is queued once per event: its dedupe key names the event (a past_due spell, a
--   stop, a usage threshold on a UTC day, a failed backup, an overdue day).
-- * Recipient `operator` means ALERT_EMAIL: the outbox sends it there, or logs it when unset.
-- * Kinds: past_due, stopped, usage_limit (customer); operator_alert (operator).

create function public.queue_notification(p_account_id uuid, p_instance_id uuid, p_kind text, p_dedupe_key text,
                                          p_recipient text, p_subject text, p_body text, p_payload jsonb)
  returns void
  language sql volatile security definer
  set search_path = ''
as $$
  insert into public.notifications (account_id, instance_id, kind, dedupe_key, recipient, subject, body, payload)
  values (p_account_id, p_instance_id, p_kind, p_dedupe_key, p_recipient, p_subject, p_body, coalesce(p_payload, '{}'::jsonb))
  on conflict (dedupe_key) do nothing
$$;

-- Daily messages crossing 80 % and 100 % of the limit, and the start of a past_due spell.
create function public.subscriptions_notices() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_email text;
  v_instance uuid;
  v_percent int;
begin
  select email into v_email from public.accounts where id = new.account_id;
  if v_email is null then
    return null;
  end if;
  select id into v_instance from public.instances
   where subscription_id = new.id and status <> 'deprovisioned' order by created_at desc limit 1;
  if new.status = 'past_due' and old.status is distinct from 'past_due' then
    perform public.queue_notification(new.account_id, v_instance, 'past_due',
      'past_due:' || new.id::text || ':' || coalesce(new.past_due_since, now())::text, v_email,
      'Your MindRoom payment did not go through', 'Your last payment did not go through.',
      jsonb_build_object('past_due_since', coalesce(new.past_due_since, now()), 'tier', new.tier));
  end if;
  if new.max_messages_per_day > 0 and new.messages_today > old.messages_today then
    foreach v_percent in array array[80, 100] loop
      if new.messages_today * 100 >= new.max_messages_per_day * v_percent
         and old.messages_today * 100 < new.max_messages_per_day * v_percent then
        perform public.queue_notification(new.account_id, v_instance, 'usage_limit',
          'usage_limit:messages:' || v_percent || ':' || new.id::text || ':' || public.utc_today()::text, v_email,
          'MindRoom: ' || v_percent || ' % of today''s messages used', 'You used ' || v_percent || ' % of today''s messages.',
          jsonb_build_object('limit', 'messages_per_day', 'percent', v_percent, 'used', new.messages_today, 'max', new.max_messages_per_day));
      end if;
    end loop;
  end if;
  return null;
end
$$;

create trigger subscriptions_notices
  after update on public.subscriptions
  for each row execute function public.subscriptions_notices();

-- Storage crossing 80 % and 100 % of the tier's quota (measured by calculate_storage_usage).
create function public.usage_metrics_notices() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_sub public.subscriptions;
  v_email text;
  v_max bigint;
  v_before bigint := case when tg_op = 'UPDATE' then coalesce(old.storage_bytes, 0) else 0 end;
  v_percent int;
begin
  if new.storage_bytes is null then
    return null;
  end if;
  select s.* into v_sub from public.subscriptions s join public.instances i on i.subscription_id = s.id where i.id = new.instance_id;
  v_max := v_sub.max_storage_gb::bigint * 1073741824;
  if v_max is null or v_max <= 0 then
    return null;
  end if;
  select email into v_email from public.accounts where id = new.account_id;
  foreach v_percent in array array[80, 100] loop
    if new.storage_bytes * 100 >= v_max * v_percent and v_before * 100 < v_max * v_percent then
      perform public.queue_notification(new.account_id, new.instance_id, 'usage_limit',
        'usage_limit:storage:' || v_percent || ':' || new.instance_id::text || ':' || new.date::text, v_email,
        'MindRoom: ' || v_percent || ' % of your storage used', 'You use ' || v_percent || ' % of your storage.',
        jsonb_build_object('limit', 'storage', 'percent', v_percent, 'used', new.storage_bytes, 'max', v_max));
    end if;
  end loop;
  return null;
end
$$;

create trigger usage_metrics_notices
  after insert or update of storage_bytes on public.usage_metrics
  for each row execute function public.usage_metrics_notices();

-- An instance stopped (paused by its owner, auto-paused, or suspended by billing): once per stop.
create function public.instances_notices() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_email text;
  v_status text;
begin
  if new.status = 'stopped' and old.status is distinct from 'stopped' then
    select a.email, s.status::text into v_email, v_status
      from public.accounts a join public.subscriptions s on s.id = new.subscription_id where a.id = new.account_id;
    if v_email is not null then
      perform public.queue_notification(new.account_id, new.id, 'stopped',
        'stopped:' || new.id::text || ':' || coalesce(new.stopped_at, now())::text, v_email,
        'Your MindRoom instance ' || new.subdomain || ' is stopped', 'Your MindRoom instance is stopped; its data is kept.',
        jsonb_build_object('desired_state', new.desired_state, 'subscription_status', v_status));
    end if;
  end if;
  return null;
end
$$;

create trigger instances_notices
  after update of status on public.instances
  for each row execute function public.instances_notices();

-- A backup that failed for a reason an operator must see (not a customer's over-limit request).
create function public.instance_backups_notices() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_subdomain text;
begin
  if new.status = 'failed' and old.status is distinct from 'failed'
     and coalesce(new.error, '') not like 'manual backup limit%' then
    select subdomain into v_subdomain from public.instances where id = new.instance_id;
    perform public.queue_notification(null, new.instance_id, 'operator_alert', 'operator:backup_failed:' || new.id::text, 'operator',
      'MindRoom: a ' || new.backup_type::text || ' backup of ' || coalesce(v_subdomain, '?') || ' failed',
      'Backup ' || new.id::text || ' (' || coalesce(new.component, 'every component') || ') of instance ' || coalesce(v_subdomain, new.instance_id::text)
        || ' failed: ' || coalesce(new.error, 'no error recorded') || E'\n\nSee `mindroom-reconciler backups list ' || coalesce(v_subdomain, '') || '` and the runbook entry "A backup is overdue".',
      jsonb_build_object('backup_id', new.id, 'backup_type', new.backup_type));
  end if;
  return null;
end
$$;

create trigger instance_backups_notices
  after update of status on public.instance_backups
  for each row execute function public.instance_backups_notices();

revoke all on function public.queue_notification(uuid, uuid, text, text, text, text, text, jsonb), public.subscriptions_notices(),
  public.usage_metrics_notices(), public.instances_notices(), public.instance_backups_notices()
  from public, anon, authenticated;
grant execute on function public.queue_notification(uuid, uuid, text, text, text, text, text, jsonb) to service_role;
