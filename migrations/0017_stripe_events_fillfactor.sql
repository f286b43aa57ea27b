-- 0017: room on each stripe_events page for its rows' next versions.
--
-- The inbox marks every event it handles (status, processed_at: markProcessed in
-- src/state/stripe-events.ts). A row holds the whole event (payload jsonb, about 1 KB for a
-- subscription), and on a full page (fillfactor 100) its new version goes to another page, so
-- the WAL carries the whole row again: about half of all the WAL the inbox wrote. With half of
-- each page kept free, the new version stays on its page, and Postgres then logs only the bytes
-- that changed (the payload comes before the columns the inbox changes). Applying 10,000 sign-up
-- events: 2,511 → 1,395 bytes of WAL per event. It matters to the webhook: each answer waits for
-- its commit's WAL flush, which also flushes whatever the inbox wrote meanwhile. The cost: the
-- table takes up to twice the pages (handled events are kept 30 days: sweep in 0009).

alter table public.stripe_events set (fillfactor = 50);
