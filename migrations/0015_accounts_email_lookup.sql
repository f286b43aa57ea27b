-- 0015: accounts are looked up by email without regard to case (lower(email) = ...): the Stripe
-- inbox for every new customer (src/state/billing.ts), the auth sign-up trigger (0012) and the
-- `keys` command. The unique constraint indexes `email` itself, which such a lookup cannot use, so
-- each was a sequential scan of accounts: a sign-up cost time in proportion to the accounts
-- already there (at 60,000 accounts, most of the inbox's database time).
--
-- Not unique: existing rows may differ only in case, and the lookups already take the first.

create index accounts_email_lower_idx on public.accounts (lower(email));
