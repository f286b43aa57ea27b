-- 0018: drop the index on handled events' processed_at, which no statement uses.
--
-- stripe_events_done_idx (0002) was meant for the retention sweep, but the sweep selects
-- `coalesce(processed_at, received_at) < now() - interval '30 days'` (0004, 0009), which an index
-- on processed_at cannot answer: its plan is a sequential scan with or without the index. Yet
-- every event the inbox marks handled (a new row version, status being indexed) and every event
-- stored `ignored` wrote an entry into it: one of the three index entries, and their WAL, that
-- each handled event costs.

drop index public.stripe_events_done_idx;
