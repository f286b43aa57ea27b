/**
 * The inbox reads the payloads only of the event types it applies from their payloads; the
 * others' (invoices: most of what Stripe sends) are neither sent by Postgres nor parsed.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { PAYLOAD_EVENT_TYPES } from "../../src/sources/stripe/apply.ts";
import { HANDLED_EVENT_TYPES } from "../../src/sources/stripe/map.ts";
import { dueEventsOfCustomer, dueEventsOfCustomers } from "../../src/state/stripe-events.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
  const rows = [
    { id: "evt_due_1", type: "customer.created", customer: "cus_due" },
    { id: "evt_due_2", type: "customer.subscription.created", customer: "cus_due" },
    { id: "evt_due_3", type: "invoice.payment_failed", customer: "cus_due" },
    { id: "evt_due_4", type: "customer.updated", customer: null },
    { id: "evt_due_5", type: "checkout.session.completed", customer: null },
  ];
  for (const [i, row] of rows.entries()) {
    await db.sql`
      insert into stripe_events (id, type, customer_id, created, payload, status, received_at)
      values (${row.id}, ${row.type}, ${row.customer}, now(), ${JSON.stringify({ id: row.id, data: { object: { n: i } } })}::text::jsonb, 'pending', now() - ${`${10 - i} seconds`}::interval)`;
  }
});
afterAll(async () => {
  await db?.drop();
});

const query = { now: new Date(Date.now() + 60_000), limit: 10, payloadTypes: PAYLOAD_EVENT_TYPES };

test("the payload types are the customer and subscription events the controller handles", () => {
  expect([...PAYLOAD_EVENT_TYPES].sort()).toEqual(HANDLED_EVENT_TYPES.filter((type) => type.startsWith("customer.")).sort());
});

test("dueEventsOfCustomers returns a customer's events in order, with the payloads of those types only", async () => {
  const events = await db.sql.begin((tx) => dueEventsOfCustomers(tx, ["cus_due"], query));
  const due = events.get("cus_due")!;
  expect(due.map((event) => [event.id, event.payload === null ? null : (event.payload as { id: string }).id])).toEqual([
    ["evt_due_1", "evt_due_1"],
    ["evt_due_2", "evt_due_2"],
    ["evt_due_3", null],
  ]);
});

test("dueEventsOfCustomer (events without a customer) does the same", async () => {
  const due = await db.sql.begin((tx) => dueEventsOfCustomer(tx, "", query));
  expect(due.map((event) => [event.id, event.payload === null ? null : (event.payload as { id: string }).id])).toEqual([
    ["evt_due_4", "evt_due_4"],
    ["evt_due_5", null],
  ]);
});
