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

revoke all on function public.api_take_token(text, int, double precision, int) from public, anon, authenticated;
grant execute on function public.api_take_token(text, int, double precision, int) to service_role;
