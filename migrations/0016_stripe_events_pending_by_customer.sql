-- 0016: a customer's pending events, by an index of their own.
--
-- The inbox reads and wakes one customer's pending events (lockDueEventsOf, wakeCustomer in
-- src/state/stripe-events.ts) for every customer it applies. The customer index also holds the
-- customer's processed events, and the pending index every customer's: before autovacuum has
-- analyzed a table that a burst has just filled, Postgres combined the two (a BitmapAnd), which
-- reads the whole pending backlog for each customer. The inbox then slowed as its backlog grew,
-- and the backlog grew the faster (seen in bench webhook at 2,000 events/s). This index answers
-- both statements alone, in the order lockDueEventsOf wants, whatever the statistics say.

create index stripe_events_pending_customer_idx on public.stripe_events (customer_id, received_at, id)
  where status = 'pending';
