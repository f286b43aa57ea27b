-- 0009: limits that come from the host (issue 18).
--
-- Contracts:
-- * `dokku_hosts.max_command_bytes` is the longest command line the host's SSH server accepts.
--   Real Dokku behind OpenSSH: 130000 (Linux's 131072-byte MAX_ARG_STRLEN bounds
--   SSH_ORIGINAL_COMMAND, less a margin); the embedded sandbox host registers its own, lower limit.
--   The driver refuses a command longer than this before sending it, naming the limit.

alter table public.dokku_hosts
  add column max_command_bytes integer not null default 130000
    constraint dokku_hosts_max_command_bytes_range check (max_command_bytes between 4096 and 1048576);
