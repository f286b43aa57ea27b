-- 0014: the customer API's shared state (issue 10).
--
-- Contracts:
-- * Rate limits are token buckets shared by every replica: one row per bucket (an API key, or a
--   client address's failed authentications), taken atomically by api_take_token. The table is
--   UNLOGGED: a crash of Postgres refills every bucket, which only ever errs towards serving.
-- * Idempotency keys are remembered 24 hours per account: the first request's fingerprint and,
--   once it has one, its response. Rows older than 24 hours are ignored and swept.
-- * A restart asked through the API is desired state like any other: the controller restarts
--   every component of the instance in its next pass and clears restart_requested_at.
-- * Only the controller (service role) touches any of it; tenants see none of it.

alter table public.instances add column restart_requested_at timestamptz;

create unlogged table public.api_rate_buckets (
  bucket text primary key check (length(bucket) between 1 and 200),
  tokens double precision not null,
  updated_at timestamptz not null
);

alter table public.api_rate_buckets enable row level security;
revoke all on public.api_rate_buckets from public, anon, authenticated;
grant all on public.api_rate_buckets to service_role;

-- Takes p_cost tokens from a bucket of p_capacity refilled at p_refill_per_second (a new bucket
-- starts full). A request that finds too few tokens takes none. p_cost 0 only looks.
-- Returns whether the tokens were taken, the whole tokens left, the seconds until the bucket is
-- full again, and the seconds until p_cost (at least one) tokens are there.
create function public.api_take_token(p_bucket text, p_capacity int, p_refill_per_second double precision,
                                      p_cost int default 1)
  returns table (allowed boolean, remaining int, reset_seconds int, retry_after_seconds int)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_now timestamptz := clock_timestamp();
  v_tokens double precision;
  v_allowed boolean;
begin
  if p_capacity < 1 or p_refill_per_second <= 0 or p_cost < 0 then
    raise exception 'bad bucket: capacity %, refill %/s, cost %', p_capacity, p_refill_per_second, p_cost
      using errcode = 'invalid_parameter_value';
  end if;
  if p_cost = 0 then
    -- Only looking: no row is written (a bucket never taken from is full).
    select least(p_capacity, b.tokens + greatest(0, extract(epoch from v_now - b.updated_at)) * p_refill_per_second)
      into v_tokens from public.api_rate_buckets b where b.bucket = p_bucket;
    v_tokens := coalesce(v_tokens, p_capacity);
    v_allowed := true;
  else
    insert into public.api_rate_buckets (bucket, tokens, updated_at) values (p_bucket, p_capacity, v_now)
    on conflict (bucket) do nothing;
    select least(p_capacity, b.tokens + greatest(0, extract(epoch from v_now - b.updated_at)) * p_refill_per_second)
      into v_tokens
      from public.api_rate_buckets b where b.bucket = p_bucket for update;
    v_allowed := v_tokens >= p_cost;
    if v_allowed then
      v_tokens := v_tokens - p_cost;
    end if;
    update public.api_rate_buckets set tokens = v_tokens, updated_at = v_now where bucket = p_bucket;
  end if;
  return query select v_allowed, floor(v_tokens)::int,
                      ceil((p_capacity - v_tokens) / p_refill_per_second)::int,
                      ceil(greatest(0, greatest(p_cost, 1) - v_tokens) / p_refill_per_second)::int;
end
$$;

-- One round trip for the checks before every API request with a well-formed key: the client
-- address's failed-authentication bucket (only looked at), the key and its account's plan (the
-- highest tier among live subscriptions, else among ended ones), and, for a key the API will
-- accept (active, unexpired, a plan with api_access and a limit in p_limits), a token from its
-- bucket `key:<id>` sized p_limits->>tier per minute. The caller decides the answer; when the
-- address is over its limit nothing else is read.
create function public.api_guard(p_key_hash text, p_address_bucket text, p_failed_per_minute int, p_limits jsonb)
  returns table (address_remaining int, address_retry_after_seconds int, address_reset_seconds int,
                 key_id uuid, account_id uuid, permissions text[], expires_at timestamptz,
                 revoked_at timestamptz, tier public.tier_name, api_access boolean,
                 allowed boolean, remaining int, reset_seconds int, retry_after_seconds int)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_address record;
  v_key record;
  v_limit int;
  v_token record;
begin
  select null::boolean as allowed, null::int as remaining, null::int as reset_seconds, null::int as retry_after_seconds into v_token;
  select * into v_address from public.api_take_token(p_address_bucket, p_failed_per_minute, p_failed_per_minute / 60.0, 0);
  if v_address.remaining < 1 then
    return query select v_address.remaining, v_address.retry_after_seconds, v_address.reset_seconds,
                        null::uuid, null::uuid, null::text[], null::timestamptz, null::timestamptz,
                        null::public.tier_name, null::boolean, null::boolean, null::int, null::int, null::int;
    return;
  end if;
  select k.id, k.account_id, k.permissions, k.expires_at, k.revoked_at, s.tier, coalesce(s.api_access, false) as api_access
    into v_key
    from public.api_keys k
    left join lateral (
      select s.tier, coalesce((s.features ->> 'api_access')::boolean, false) as api_access
        from public.subscriptions s join public.tiers t on t.name = s.tier
       where s.account_id = k.account_id
       order by s.status in ('trialing', 'active', 'past_due') desc, t.rank desc, s.created_at desc
       limit 1
    ) s on true
   where k.key_hash = p_key_hash;
  v_limit := case when v_key.id is not null and v_key.revoked_at is null
                       and (v_key.expires_at is null or v_key.expires_at > now()) and v_key.api_access
                  then (p_limits ->> v_key.tier::text)::int end;
  if v_limit is not null then
    select * into v_token from public.api_take_token('key:' || v_key.id::text, v_limit, v_limit / 60.0, 1);
  end if;
  return query select v_address.remaining, v_address.retry_after_seconds, v_address.reset_seconds,
                      v_key.id, v_key.account_id, v_key.permissions, v_key.expires_at, v_key.revoked_at,
                      v_key.tier, v_key.api_access,
                      v_token.allowed, v_token.remaining, v_token.reset_seconds, v_token.retry_after_seconds;
end
$$;

create table public.api_idempotency_keys (
  account_id uuid not null references public.accounts (id) on delete cascade,
  idempotency_key text not null check (length(idempotency_key) between 1 and 255),
  api_key_id uuid references public.api_keys (id) on delete set null,
  -- sha256 of method, route and body: the same key with another request is refused.
  fingerprint text not null check (fingerprint ~ '^[0-9a-f]{64}$'),
  -- NULL while the first request is in flight.
  status_code int check (status_code between 100 and 599),
  response_body jsonb,
  created_at timestamptz not null default now(),
  primary key (account_id, idempotency_key)
);

create index api_idempotency_keys_created_idx on public.api_idempotency_keys (created_at);

alter table public.api_idempotency_keys enable row level security;
revoke all on public.api_idempotency_keys from public, anon, authenticated;
grant all on public.api_idempotency_keys to service_role;

revoke all on function public.api_take_token(text, int, double precision, int), public.api_guard(text, text, int, jsonb)
  from public, anon, authenticated;
grant execute on function public.api_take_token(text, int, double precision, int), public.api_guard(text, text, int, jsonb)
  to service_role;
