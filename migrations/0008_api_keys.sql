-- 0008: API keys are written only through their functions (issue 15).
--
-- Contracts:
-- * `authenticated` reads its own keys (every column but key_hash) and writes none directly: keys
--   are created by create_api_key (scopes checked, prefix derived from the key, audited, at most
--   20 active per account) and revoked by revoke_api_key (owner or operator, audited).
-- * Scopes are a checked set, enforced by a constraint, so no row can carry an unknown permission.
-- * A revoked key stays revoked: revoked_at and revoked_by are recorded, and no writer, tenant or
--   operator, can make it active again (issue a new key instead).

create function public.api_key_scopes() returns text[]
  language sql immutable
  set search_path = ''
as $$
  select array['instances:read', 'instances:write', 'backups:read', 'backups:write', 'usage:read',
               'support:write', 'read']::text[]
$$;

alter table public.api_keys
  add column revoked_at timestamptz,
  add column revoked_by text;

-- Keys that already carry a scope outside the set were not made by create_api_key: they are
-- revoked (and audited with what they carried); their permissions keep only the known scopes.
with unknown as (
  select k.id, k.account_id, k.permissions
    from public.api_keys k
   where not (k.permissions <@ public.api_key_scopes()) or cardinality(k.permissions) = 0
), fixed as (
  update public.api_keys k
     set permissions = coalesce(nullif(array(select p from unnest(u.permissions) p
                                              where p = any (public.api_key_scopes())), '{}'), array['read']),
         is_active = false,
         revoked_at = coalesce(k.revoked_at, now()),
         revoked_by = coalesce(k.revoked_by, 'migration 0008: unknown scope')
    from unknown u
   where k.id = u.id
  returning k.id
)
insert into public.audit_logs (account_id, action, action_category, details, actor)
select u.account_id, 'api_key_revoked', 'security',
       jsonb_build_object('api_key_id', u.id, 'reason', 'unknown scope', 'permissions', u.permissions),
       'migration 0008'
  from unknown u join fixed f on f.id = u.id;

update public.api_keys set revoked_at = now(), revoked_by = 'migration 0008: inactive before'
 where not is_active and revoked_at is null;

alter table public.api_keys
  add constraint api_keys_known_scopes
    check (cardinality(permissions) >= 1 and permissions <@ public.api_key_scopes()),
  add constraint api_keys_revoked_consistent
    check (is_active = (revoked_at is null) and (revoked_at is null) = (revoked_by is null));

-- Deactivating records when and who; re-activating is refused.
create function public.api_keys_before_update() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if old.revoked_at is not null and (new.is_active or new.revoked_at is null) then
    raise exception 'API key % was revoked at %: a revoked key stays revoked, create a new one', old.id, old.revoked_at
      using errcode = 'object_not_in_prerequisite_state';
  end if;
  if old.is_active and not new.is_active then
    new.revoked_at := coalesce(new.revoked_at, now());
    new.revoked_by := coalesce(new.revoked_by, public.current_actor());
  end if;
  return new;
end
$$;

create trigger api_keys_before_update
  before update on public.api_keys
  for each row execute function public.api_keys_before_update();

-- Privileges: read own rows without the hash; no direct writes.
drop policy api_keys_manage_own on public.api_keys;
revoke all on public.api_keys from authenticated;
grant select (id, account_id, name, key_prefix, permissions, last_used_at, expires_at, is_active,
              created_at, revoked_at, revoked_by)
  on public.api_keys to authenticated;
create policy api_keys_read_own on public.api_keys for select to authenticated
  using (account_id = (select auth.uid()));

-- Creates a key and returns it in plain text exactly once; only its sha256 is stored.
-- Key: `mr_` + 64 hex characters (two v4 UUIDs' worth of strong randomness); prefix: its first 11
-- characters. Scopes must come from api_key_scopes(); at most 20 active keys per account.
create or replace function public.create_api_key(p_account_id uuid, p_name text,
                                                 p_permissions text[] default array['read']::text[],
                                                 p_expires_at timestamptz default null)
  returns table (id uuid, api_key text, key_prefix text)
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_key text := 'mr_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  v_unknown text[];
  v_active bigint;
  v_id uuid;
begin
  perform public.require_account(p_account_id);
  if p_name is null or btrim(p_name) = '' then
    raise exception 'an API key needs a name' using errcode = 'null_value_not_allowed';
  end if;
  if p_permissions is null or cardinality(p_permissions) = 0 then
    raise exception 'an API key needs at least one permission' using errcode = 'invalid_parameter_value';
  end if;
  v_unknown := array(select p from unnest(p_permissions) p where p is null or not (p = any (public.api_key_scopes())));
  if cardinality(v_unknown) > 0 then
    raise exception 'unknown API key scope %', array_to_string(v_unknown, ', ', 'NULL')
      using errcode = 'invalid_parameter_value',
            hint = 'scopes: ' || array_to_string(public.api_key_scopes(), ', ');
  end if;
  if p_expires_at is not null and p_expires_at <= now() then
    raise exception 'expiry % is in the past', p_expires_at using errcode = 'invalid_parameter_value';
  end if;
  perform public.lock_tenant_quota('api_keys_active', p_account_id);
  select count(*) into v_active from public.api_keys k
   where k.account_id = p_account_id and k.is_active and (k.expires_at is null or k.expires_at > now());
  if v_active >= 20 then
    raise exception 'account % has 20 active API keys, the most it may have: revoke one first', p_account_id
      using errcode = 'PT409';
  end if;
  insert into public.api_keys (account_id, name, key_hash, key_prefix, permissions, expires_at)
  values (p_account_id, p_name, encode(sha256(convert_to(v_key, 'UTF8')), 'hex'), left(v_key, 11),
          array(select distinct p from unnest(p_permissions) p order by p), p_expires_at)
  returning api_keys.id into v_id;
  perform public.audit(p_account_id, null, 'api_key_created', 'security',
                       jsonb_build_object('api_key_id', v_id, 'name', p_name, 'key_prefix', left(v_key, 11),
                                          'permissions', p_permissions));
  return query select v_id, v_key, left(v_key, 11);
end
$$;

-- Revokes a key: true when this call revoked it, false when it was already revoked. A signed-in
-- user may revoke only their own keys; another account's key is "unknown", like a missing one.
create function public.revoke_api_key(p_key_id uuid) returns boolean
  language plpgsql volatile security definer
  set search_path = ''
as $$
declare
  v_role text := public.request_role();
  v public.api_keys;
begin
  if p_key_id is null then
    raise exception 'API key id must not be null' using errcode = 'null_value_not_allowed';
  end if;
  if v_role = 'anon' then
    raise exception 'permission denied: sign in first' using errcode = 'insufficient_privilege';
  end if;
  select * into v from public.api_keys
   where id = p_key_id and (v_role <> 'authenticated' or account_id = auth.uid())
   for update;
  if not found then
    raise exception 'unknown API key %', p_key_id using errcode = 'no_data_found';
  end if;
  if v.revoked_at is not null then
    return false;
  end if;
  update public.api_keys set is_active = false where id = p_key_id;
  perform public.audit(v.account_id, null, 'api_key_revoked', 'security',
                       jsonb_build_object('api_key_id', p_key_id, 'key_prefix', v.key_prefix));
  return true;
end
$$;

revoke all on function public.api_key_scopes(), public.api_keys_before_update(), public.revoke_api_key(uuid)
  from public, anon, authenticated;
grant execute on function public.api_key_scopes(), public.revoke_api_key(uuid), public.create_api_key(uuid, text, text[], timestamptz)
  to service_role;
grant execute on function public.revoke_api_key(uuid) to authenticated;
