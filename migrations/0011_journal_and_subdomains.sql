-- 0011: ownership of the journal's outcomes and of an instance's name (issue 19).
--
-- Contracts:
-- * `superseded`: an action whose outcome is `unknown` (its process stopped before recording it)
--   and which the pass that observed the host afterwards planned again; the new row records what
--   happened. An `unknown` row the observing pass found converged (nothing left to do on its
--   target) becomes `succeeded`. So `unknown` means "not yet observed since the crash", and
--   `status` counts only those.
-- * An instance's subdomain never changes. Its Dokku apps (`<subdomain>-<component>`), domains and
--   storage entries are named after it; a rename would make the controller create new, empty apps
--   while the old ones keep the customer's data and run on as orphans. To move a customer to
--   another name, create a new instance and restore a backup into it.

alter type public.operation_status add value if not exists 'superseded';

create function public.instances_subdomain_immutable() returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  raise exception 'instance %: the subdomain cannot change (% -> %)', old.id, old.subdomain, new.subdomain
    using errcode = 'check_violation',
          detail = 'its Dokku apps, domains and storage are named after the subdomain: a rename would start new, empty apps and leave the data in the old ones',
          hint = 'create a new instance and restore a backup of this one into it';
end
$$;

create trigger instances_subdomain_immutable
  before update of subdomain on public.instances
  for each row when (old.subdomain is distinct from new.subdomain)
  execute function public.instances_subdomain_immutable();
