-- 0012 (issue 11; the lead renumbers at merge): the outbox as an at-least-once queue, and
-- accounts linked to the people who sign in.
--
-- Contracts:
-- * A notification is pending while `sent_at` and `failed_at` are null. A deliverer claims it by
--   setting `claimed_until` (FOR UPDATE SKIP LOCKED, in a short transaction that holds no lock
--   while talking to the SMTP server); a claim that lapses (the process died between "accepted by
--   the server" and "recorded") makes the row claimable again, and the resend carries the same
--   Message-ID, derived from `id`. `next_attempt_at` is when a retry is due; `failed_at` ends it.
-- * An account belongs to the auth user whose id it carries (`accounts.id = auth.users.id`, what
--   every policy and function already compares with auth.uid()). When a user's email is confirmed
--   (at insert, or later) and an account with that email (compared case-insensitively) has no
--   user yet, the account is re-keyed to the user's id in the same transaction, and every foreign
--   key follows (ON UPDATE CASCADE). An account that already has a user is never taken over: a
--   second user with the same email in another case gets nothing. An unconfirmed email never
--   links. The Stripe side (src/state/billing.ts) already uses the account of a confirmed user.

-- Outbox ----------------------------------------------------------------------------------------

alter table public.notifications
  add column next_attempt_at timestamptz not null default now(),
  add column claimed_until timestamptz,
  add column failed_at timestamptz;

drop index public.notifications_unsent_idx;
create index notifications_due_idx on public.notifications (next_attempt_at)
  where sent_at is null and failed_at is null;

-- Account linking -------------------------------------------------------------------------------

-- Every foreign key to accounts(id) follows a re-key. Written against the catalog so tables that
-- other migrations add keep working; each constraint keeps its name and its ON DELETE action.
do $$
declare
  c record;
begin
  for c in
    select con.conname, con.conrelid::regclass as tbl, pg_get_constraintdef(con.oid) as def
      from pg_constraint con
     where con.contype = 'f' and con.confrelid = 'public.accounts'::regclass and con.confupdtype <> 'c'
  loop
    execute format('alter table %s drop constraint %I', c.tbl, c.conname);
    execute format('alter table %s add constraint %I %s on update cascade', c.tbl, c.conname, c.def);
  end loop;
end
$$;

-- Serialises account creation and linking per email with the Stripe side, which takes the same
-- lock (src/state/billing.ts: `mindroom_account_email:<lower-case email>`).
create or replace function public.handle_new_auth_user() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
declare
  v_account public.accounts;
begin
  if new.email is null or new.email_confirmed_at is null then
    return new;
  end if;
  perform pg_advisory_xact_lock(hashtext('mindroom_account_email:' || lower(new.email)));
  select a.* into v_account from public.accounts a where lower(a.email) = lower(new.email)
   order by (a.id = new.id) desc, a.created_at limit 1 for update;
  if not found then
    insert into public.accounts (id, email, full_name)
    values (new.id, new.email, nullif(new.raw_user_meta_data ->> 'full_name', ''))
    on conflict do nothing;
  elsif v_account.id <> new.id and not exists (select 1 from auth.users u where u.id = v_account.id) then
    update public.accounts set id = new.id where id = v_account.id;
    perform public.audit(new.id, null, 'account.linked', 'account',
      jsonb_build_object('previous_account_id', v_account.id));
  end if;
  return new;
end
$$;

revoke execute on function public.handle_new_auth_user() from public, anon, authenticated;

-- Users confirmed before this migration whose account was created by Stripe first are linked now.
do $$
declare
  u record;
begin
  for u in
    select au.id, au.email from auth.users au
     where au.email is not null and au.email_confirmed_at is not null
       and not exists (select 1 from public.accounts a where a.id = au.id)
     order by au.created_at nulls last, au.id
  loop
    update public.accounts a set id = u.id
     where a.id = (select b.id from public.accounts b
                    where lower(b.email) = lower(u.email)
                      and not exists (select 1 from auth.users x where x.id = b.id)
                    order by b.created_at limit 1);
  end loop;
end
$$;
