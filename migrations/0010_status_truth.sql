-- 0009: limits that come from the host, and one account per email across Stripe customers (issue 18).
--
-- Contracts:
-- * `dokku_hosts.max_command_bytes` is the longest command line the host's SSH server accepts.
--   Real Dokku behind OpenSSH: 130000 (Linux's 131072-byte MAX_ARG_STRLEN bounds
--   SSH_ORIGINAL_COMMAND, less a margin); the embedded sandbox host registers its own, lower limit.
--   The driver refuses a command longer than this before sending it, naming the limit.
-- * One account per email. A person who checks out twice gets two Stripe customers with one
--   email; both belong to the one account of that email (`stripe_customers`), which then holds
--   the subscriptions of both. `accounts.stripe_customer_id` stays the account's first customer,
--   whose profile (email, names) the account follows; a trigger keeps it in `stripe_customers`.
--   Linking by email still requires the account's email to be trusted (0007).

alter table public.dokku_hosts
  add column max_command_bytes integer not null default 130000
    constraint dokku_hosts_max_command_bytes_range check (max_command_bytes between 4096 and 1048576);

create table public.stripe_customers (
  stripe_customer_id text primary key check (stripe_customer_id <> ''),
  account_id uuid not null references public.accounts (id) on delete cascade,
  created_at timestamptz not null default now()
);

create index stripe_customers_account_id_idx on public.stripe_customers (account_id);

alter table public.stripe_customers enable row level security;
revoke all on public.stripe_customers from public, anon, authenticated;
grant all on public.stripe_customers to service_role;

insert into public.stripe_customers (stripe_customer_id, account_id)
select stripe_customer_id, id from public.accounts where stripe_customer_id is not null;

-- An account's first customer is always one of its customers, whoever set it (Stripe source,
-- seed, operator): the customer follows the account it was set on.
create function public.accounts_register_stripe_customer() returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  insert into public.stripe_customers (stripe_customer_id, account_id)
  values (new.stripe_customer_id, new.id)
  on conflict (stripe_customer_id) do update set account_id = excluded.account_id;
  return null;
end
$$;

revoke execute on function public.accounts_register_stripe_customer() from public, anon, authenticated;

create trigger accounts_register_stripe_customer
  after insert or update of stripe_customer_id on public.accounts
  for each row when (new.stripe_customer_id is not null)
  execute function public.accounts_register_stripe_customer();
