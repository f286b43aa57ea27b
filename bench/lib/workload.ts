/**
 * The scale workload, in three bulk statements: N accounts, one active subscription each (tiers in
 * turn: free, starter, professional, enterprise; free ones have no Stripe ids), and an instance
 * per subscription through `provision_instance`, as the dashboard would request it.
 */
import type { Sql } from "postgres";

const TIERS = ["free", "starter", "professional", "enterprise"] as const;

/** Inserts the workload; returns subscription id → instance subdomain. */
export async function insertWorkload(sql: Sql, instances: number): Promise<Map<string, string>> {
  await sql.begin(async (tx) => {
    await tx`
      insert into public.accounts (email, full_name)
      select 'bench-' || n || '@example.com', 'Bench ' || n from generate_series(1, ${instances}::int) as n`;
    await tx`
      insert into public.subscriptions (account_id, stripe_subscription_id, stripe_price_id, tier, status, current_period_start, current_period_end)
      select a.id,
             case when t.tier = 'free' then null else 'sub_bench_' || a.n end,
             case when t.tier = 'free' then null else 'price_bench_' || t.tier end,
             t.tier::public.tier_name, 'active',
             case when t.tier = 'free' then null else now() end,
             case when t.tier = 'free' then null else now() + interval '1 month' end
      from (select id, split_part(split_part(email, '@', 1), '-', 2)::int as n from public.accounts) as a
      cross join lateral (select (${[...TIERS]}::text[])[1 + a.n % ${TIERS.length}::int] as tier) as t`;
    await tx`select public.provision_instance(s.id, '{}'::jsonb) from public.subscriptions s order by s.id`;
  });
  const rows = await sql<{ subscription_id: string; subdomain: string }[]>`select subscription_id, subdomain from public.instances`;
  if (rows.length !== instances) throw new Error(`workload: expected ${instances} instances, found ${rows.length}`);
  return new Map(rows.map((row) => [row.subscription_id, row.subdomain]));
}
