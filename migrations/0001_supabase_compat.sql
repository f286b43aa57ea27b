-- 0001: the pieces of Supabase this schema relies on, created only where they are missing.
--
-- On a Supabase project every object below already exists and this file changes nothing: each
-- creation is guarded by an existence check, and grants are only issued on objects this file
-- created (on Supabase, `postgres` has no grant option on the `auth` schema). On plain Postgres
-- 15+ it creates the three API roles, the `auth` schema, a minimal `auth.users`, and the claim
-- readers `auth.uid()`, `auth.role()` and `auth.jwt()`, defined exactly as Supabase defines them,
-- so RLS policies behave the same whether PostgREST or a test sets `request.jwt.claims`.
--
-- No extension is used: gen_random_uuid() and sha256(bytea) are core functions.

do $$
begin
  -- NOLOGIN: these roles are entered with SET ROLE (PostgREST does it per request), never logged in.
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    -- BYPASSRLS, as on Supabase: the service key sees and writes every row.
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

-- The migrating role may switch into the API roles (tests and the controller's own checks do).
-- Only granted when it is not already a member, so re-running on Supabase is a no-op.
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not pg_has_role(current_user, r, 'MEMBER') then
      begin
        execute format('grant %I to %I', r, current_user);
      exception when insufficient_privilege then
        -- Managed platforms decide role membership themselves; nothing here depends on it.
        raise notice 'not granting % to %: insufficient privilege', r, current_user;
      end;
    end if;
  end loop;
end
$$;

do $$
begin
  if not exists (select 1 from pg_namespace where nspname = 'auth') then
    create schema auth;
    grant usage on schema auth to anon, authenticated, service_role;
  end if;

  if to_regclass('auth.users') is null then
    -- A minimal stand-in for Supabase Auth's table: the columns this project reads or seeds.
    create table auth.users (
      id uuid primary key default gen_random_uuid(),
      email text unique,
      raw_user_meta_data jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    grant select on auth.users to service_role;
  end if;

  -- The claim readers, verbatim from Supabase's auth schema: the legacy per-claim setting first
  -- (`request.jwt.claim.sub`), then the JSON of all claims (`request.jwt.claims`).
  if to_regprocedure('auth.uid()') is null then
    create function auth.uid() returns uuid
      language sql stable
    as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
      )::uuid
    $f$;
    grant execute on function auth.uid() to anon, authenticated, service_role;
  end if;

  if to_regprocedure('auth.role()') is null then
    create function auth.role() returns text
      language sql stable
    as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
      )::text
    $f$;
    grant execute on function auth.role() to anon, authenticated, service_role;
  end if;

  if to_regprocedure('auth.jwt()') is null then
    create function auth.jwt() returns jsonb
      language sql stable
    as $f$
      select coalesce(
        nullif(current_setting('request.jwt.claim', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')
      )::jsonb
    $f$;
    grant execute on function auth.jwt() to anon, authenticated, service_role;
  end if;
end
$$;

-- As on Supabase: the API roles may look into `public`; table privileges are granted per table in
-- the RLS migration (0005), never wholesale.
grant usage on schema public to anon, authenticated, service_role;

-- Postgres lets PUBLIC execute every new function by default. Functions here are deny-by-default:
-- each one the API roles may call is granted explicitly in 0005.
alter default privileges in schema public revoke execute on functions from public;
