-- 0020: a subscription born `incomplete` wakes no reconcile.
--
-- Stripe creates a subscription whose first payment has not gone through as `incomplete`. It wants
-- no instance (billingPhase in src/reconciler/desired.ts: phase none) and, being new, has none, so
-- the controller's pass for it loads it, finds nothing to do and stops. Every such insert
-- notified the controller all the same: in `bench webhook` at 2,000 events a second, made of
-- sign-ups whose first payment fails, that was 400-500 reconciles a second that did nothing, on
-- the daemon's request thread, each with a query of its own.
--
-- What still notifies: every other insert, and every change of what the controller reads
-- (subscription_feeds_changed), among them the incomplete subscription's first change of status
-- (to active when the payment goes through, to incomplete_expired after 23 hours). The
-- controller's resync already passes over such a subscription (listKeys in src/state/instances.ts:
-- an instance, or a status that provisions one).
--
-- The function is 0003's but for the insert's condition.

create or replace function public.subscriptions_after_write() returns trigger
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
    if new.status <> 'incomplete' then
      perform pg_notify('mindroom_reconcile', new.id::text);
    end if;
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
