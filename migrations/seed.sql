-- Demo data (`mindroom-reconciler seed`). Idempotent: fixed ids, ON CONFLICT and NOT EXISTS
-- guards, so running it any number of times leaves the same rows (usage covers the last 7 UTC days
-- relative to the day it first runs; a later day adds that day's rows).
--
-- Four accounts, one per tier, each with an active subscription (the free one has no Stripe ids)
-- and an instance whose desired state is running. No Dokku host is seeded: the controller places
-- instances on the hosts it is configured with (or its sandbox host).
--
-- Ids: accounts a0.., subscriptions b0.., instances c0.., API key d0.., ticket e0..; the last digit
-- is the tier: 1 free, 2 starter, 3 professional, 4 enterprise.

-- Confirmed sign-ups: the auth.users trigger creates the account rows.
insert into auth.users (id, email, email_confirmed_at, raw_user_meta_data) values
  ('a0000000-0000-4000-8000-000000000001', 'demo-free@example.com', now(), '{"full_name": "Fay Free"}'),
  ('a0000000-0000-4000-8000-000000000002', 'demo-starter@example.com', now(), '{"full_name": "Sam Starter"}'),
  ('a0000000-0000-4000-8000-000000000003', 'demo-pro@example.com', now(), '{"full_name": "Pat Professional"}'),
  ('a0000000-0000-4000-8000-000000000004', 'demo-enterprise@example.com', now(), '{"full_name": "Eve Enterprise"}')
on conflict do nothing;

insert into public.accounts (id, email, full_name, company_name, stripe_customer_id) values
  ('a0000000-0000-4000-8000-000000000001', 'demo-free@example.com', 'Fay Free', null, null),
  ('a0000000-0000-4000-8000-000000000002', 'demo-starter@example.com', 'Sam Starter', 'Starter Studio', 'cus_demo_starter'),
  ('a0000000-0000-4000-8000-000000000003', 'demo-pro@example.com', 'Pat Professional', 'Pro Partners', 'cus_demo_pro'),
  ('a0000000-0000-4000-8000-000000000004', 'demo-enterprise@example.com', 'Eve Enterprise', 'Enterprise Inc', 'cus_demo_enterprise')
on conflict (id) do update set
  full_name = excluded.full_name,
  company_name = excluded.company_name,
  stripe_customer_id = excluded.stripe_customer_id;

-- Limits and features come from `tiers` (trigger); the status audit rows are written by trigger.
insert into public.subscriptions (id, account_id, stripe_subscription_id, stripe_price_id, tier, status,
                                  current_period_start, current_period_end) values
  ('b0000000-0000-4000-8000-000000000001', 'a0000000-0000-4000-8000-000000000001',
   null, null, 'free', 'active', null, null),
  ('b0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000002',
   'sub_demo_starter', 'price_demo_starter_monthly', 'starter', 'active',
   date_trunc('month', now()), date_trunc('month', now()) + interval '1 month'),
  ('b0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000003',
   'sub_demo_pro', 'price_demo_professional_monthly', 'professional', 'active',
   date_trunc('month', now()), date_trunc('month', now()) + interval '1 month'),
  ('b0000000-0000-4000-8000-000000000004', 'a0000000-0000-4000-8000-000000000004',
   'sub_demo_enterprise', 'price_demo_enterprise_yearly', 'enterprise', 'active',
   date_trunc('year', now()), date_trunc('year', now()) + interval '1 year')
on conflict do nothing;

-- Memory and CPU come from the tier (trigger); configurations differ per instance.
insert into public.instances (id, subscription_id, account_id, subdomain, desired_state, config) values
  ('c0000000-0000-4000-8000-000000000001', 'b0000000-0000-4000-8000-000000000001',
   'a0000000-0000-4000-8000-000000000001', 'demo-free', 'running',
   '{"agents": ["assistant"], "default_model": "gpt-4o-mini", "bridges": []}'),
  ('c0000000-0000-4000-8000-000000000002', 'b0000000-0000-4000-8000-000000000002',
   'a0000000-0000-4000-8000-000000000002', 'demo-starter', 'running',
   '{"agents": ["assistant", "researcher"], "default_model": "gpt-4o", "bridges": ["slack"]}'),
  ('c0000000-0000-4000-8000-000000000003', 'b0000000-0000-4000-8000-000000000003',
   'a0000000-0000-4000-8000-000000000003', 'demo-pro', 'running',
   '{"agents": ["assistant", "researcher", "coder", "analyst"], "default_model": "claude-sonnet",
     "bridges": ["slack", "telegram", "discord"], "voice": true}'),
  ('c0000000-0000-4000-8000-000000000004', 'b0000000-0000-4000-8000-000000000004',
   'a0000000-0000-4000-8000-000000000004', 'demo-enterprise', 'running',
   '{"agents": ["assistant", "researcher", "coder", "analyst", "support"], "default_model": "claude-opus",
     "bridges": ["slack", "telegram", "discord", "whatsapp", "email"], "voice": true, "sso": true}')
on conflict do nothing;

-- A week of usage per instance (UTC days), scaled by tier.
insert into public.usage_metrics (instance_id, account_id, date, messages_sent, messages_received,
                                  agents_used, agents, tools_used, platforms_active, errors, storage_bytes)
select i.id, i.account_id, (now() at time zone 'utc')::date - d,
       (10 * t.n + d) * t.n, (12 * t.n + d) * t.n,
       t.n, t.agents, jsonb_build_object('web_search', 3 * t.n + d, 'calculator', t.n),
       t.platforms, d % 2, (t.n * 200 + d) * 1048576::bigint
  from generate_series(0, 6) as d
  cross join (values
    ('c0000000-0000-4000-8000-000000000001'::uuid, 1, '{"assistant": 10}'::jsonb, '{"matrix": 10}'::jsonb),
    ('c0000000-0000-4000-8000-000000000002'::uuid, 2, '{"assistant": 30, "researcher": 12}'::jsonb,
     '{"matrix": 20, "slack": 22}'::jsonb),
    ('c0000000-0000-4000-8000-000000000003'::uuid, 3,
     '{"assistant": 60, "researcher": 25, "coder": 20}'::jsonb,
     '{"matrix": 40, "slack": 30, "telegram": 35}'::jsonb),
    ('c0000000-0000-4000-8000-000000000004'::uuid, 4,
     '{"assistant": 90, "researcher": 40, "coder": 35, "analyst": 30}'::jsonb,
     '{"matrix": 60, "slack": 50, "telegram": 45, "discord": 40}'::jsonb)
  ) as t (instance_id, n, agents, platforms)
  join public.instances i on i.id = t.instance_id
on conflict (instance_id, date) do nothing;

-- Sample audit trail (the subscription status rows come from the trigger).
insert into public.audit_logs (account_id, instance_id, action, action_category, details, actor, created_at)
select s.account_id, s.instance_id, s.action, s.category, s.details || '{"seed": true}'::jsonb, s.actor,
       now() - s.age
  from (values
    ('a0000000-0000-4000-8000-000000000001'::uuid, null::uuid, 'account_created', 'account',
     '{}'::jsonb, 'system', interval '8 days'),
    ('a0000000-0000-4000-8000-000000000001'::uuid, 'c0000000-0000-4000-8000-000000000001'::uuid,
     'instance_provision_requested', 'instance', '{"subdomain": "demo-free"}'::jsonb, 'system', interval '8 days'),
    ('a0000000-0000-4000-8000-000000000002'::uuid, 'c0000000-0000-4000-8000-000000000002'::uuid,
     'instance_provision_requested', 'instance', '{"subdomain": "demo-starter"}'::jsonb, 'stripe', interval '8 days'),
    ('a0000000-0000-4000-8000-000000000002'::uuid, null::uuid, 'api_key_created', 'security',
     '{"key_prefix": "mr_demo_sta"}'::jsonb, 'user:a0000000-0000-4000-8000-000000000002', interval '5 days'),
    ('a0000000-0000-4000-8000-000000000003'::uuid, 'c0000000-0000-4000-8000-000000000003'::uuid,
     'instance_provision_requested', 'instance', '{"subdomain": "demo-pro"}'::jsonb, 'stripe', interval '8 days'),
    ('a0000000-0000-4000-8000-000000000003'::uuid, 'c0000000-0000-4000-8000-000000000003'::uuid,
     'instance_health_changed', 'health', '{"from": "healthy", "to": "degraded"}'::jsonb, 'controller',
     interval '2 days'),
    ('a0000000-0000-4000-8000-000000000004'::uuid, 'c0000000-0000-4000-8000-000000000004'::uuid,
     'instance_provision_requested', 'instance', '{"subdomain": "demo-enterprise"}'::jsonb, 'stripe',
     interval '8 days')
  ) as s (account_id, instance_id, action, category, details, actor, age)
 where not exists (
   select 1 from public.audit_logs a
    where a.action = s.action and a.account_id = s.account_id
      and a.instance_id is not distinct from s.instance_id and a.details ->> 'seed' = 'true'
 );

-- An API key of the starter account, stored hashed: the plain key is mr_demo_starter_key_0001.
insert into public.api_keys (id, account_id, name, key_hash, key_prefix, permissions) values
  ('d0000000-0000-4000-8000-000000000002', 'a0000000-0000-4000-8000-000000000002', 'Demo key',
   encode(sha256('mr_demo_starter_key_0001'::bytea), 'hex'), 'mr_demo_sta', array['instances:read', 'instances:write', 'usage:read'])
on conflict do nothing;

-- A ticket of the professional account: its priority (high) comes from the tier by trigger.
insert into public.support_tickets (id, account_id, instance_id, subject, description) values
  ('e0000000-0000-4000-8000-000000000003', 'a0000000-0000-4000-8000-000000000003',
   'c0000000-0000-4000-8000-000000000003', 'Telegram bridge drops messages',
   'Since yesterday some messages from our Telegram group do not reach the agents.')
on conflict do nothing;
