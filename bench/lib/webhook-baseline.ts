/**
 * The webhook benchmark's baseline: the least a Stripe webhook can do, in its own process. It
 * verifies the signature with stripe-node's `constructEvent`, inserts the event into the same
 * `stripe_events` table as the daemon (status `ignored`, so the daemon's inbox worker leaves it
 * alone) with `ON CONFLICT DO NOTHING`, and answers 200. No routing, logging, metrics or schema
 * checks. Started by bench/webhook.ts with DATABASE_URL and WEBHOOK_SECRET in the environment; it
 * sends its port over IPC once it listens.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

import postgres from "postgres";
import Stripe from "stripe";

const secret = process.env.WEBHOOK_SECRET ?? "";
const sql = postgres(process.env.DATABASE_URL ?? "", { max: Number(process.env.POOL_MAX ?? 6), onnotice: () => {} });

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    let event: Stripe.Event;
    try {
      event = Stripe.webhooks.constructEvent(body, String(req.headers["stripe-signature"]), secret);
    } catch {
      res.writeHead(400).end();
      return;
    }
    sql`insert into stripe_events (id, type, created, payload, status, processed_at)
        values (${event.id}, ${event.type}, to_timestamp(${event.created}), ${body.toString("utf8")}::text::jsonb, 'ignored', now())
        on conflict (id) do nothing`.then(
      () => res.writeHead(200, { "content-type": "application/json" }).end('{"received":true}'),
      () => res.writeHead(500).end(),
    );
  });
});

server.listen(0, "127.0.0.1", () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on("disconnect", () => {
  server.close();
  void sql.end({ timeout: 1 }).finally(() => process.exit(0));
});
