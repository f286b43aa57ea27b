-- 0019: index only the rows that each index's readers look for.
--
-- stripe_events_customer_idx (0002) serves one statement: the payload-mode guard's look at a
-- Stripe subscription's same-second events (sameSecondSubscriptionEvents in
-- src/state/stripe-events.ts: customer_id, created, and type like 'customer.subscription.%').
-- Every other event (invoices, payment intents, charges: most of what Stripe sends) wrote an entry
-- into it when the webhook stored it, on the path of the answer, and another when the inbox marked
-- it handled (a new row version, status being indexed). It now holds subscription events only.
--
-- audit_logs_instance_time_idx (0002) serves searches by instance, which never look for a null
-- instance_id; account and billing rows, three of them per sign-up, have none.
--
-- stripe_events_dead_idx: the inbox gauges count dead events every few seconds and `status` lists
-- the latest; both read the whole table, 30 days of events. Dead events are rare, so this index
-- costs nothing on the way in.

drop index public.stripe_events_customer_idx;
create index stripe_events_customer_idx on public.stripe_events (customer_id, created)
  where type like 'customer.subscription.%';

drop index public.audit_logs_instance_time_idx;
create index audit_logs_instance_time_idx on public.audit_logs (instance_id, created_at desc)
  where instance_id is not null;

create index stripe_events_dead_idx on public.stripe_events (received_at)
  where status = 'dead';
