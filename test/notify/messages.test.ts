/**
 * Issue 11: each message kind rendered from real rows (claimed from the outbox as the deliverer
 * claims them), text and HTML.
 */
import { afterAll, beforeAll, expect, test } from "vitest";

import { signDownloadPath, verifyDownloadUrl } from "../../src/runtime/backup-links.ts";
import { renderNotification } from "../../src/runtime/messages.ts";
import { raiseHealthAlert } from "../../src/state/health.ts";
import { claimDue, type ClaimedNotification } from "../../src/state/notifications.ts";
import { createTestDatabase, type TestDatabase } from "../helpers/db.ts";
import { createInstance } from "../sql/support.ts";

const MASTER_KEY = "test-master-key-0123456789abcdef0123";
const NOW = new Date("2030-01-02T03:04:05Z");
const context = {
  now: NOW,
  gracePeriodMs: 7 * 86_400_000,
  downloadLink: (backupId: string, now: Date) => {
    const link = signDownloadPath(MASTER_KEY, backupId, now, 7 * 86_400_000);
    return { url: `https://controller.mindroom.test${link.path}`, expiresAt: link.expiresAt };
  },
};

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

/** A running instance of "Ada <b>Lovelace</b>" (markup in a name must not reach the HTML). */
async function customer(): Promise<{ accountId: string; instanceId: string; email: string }> {
  const c = await createInstance(db.sql, { tier: "starter" });
  await db.sql`update accounts set full_name = 'Ada <b>Lovelace</b>' where id = ${c.accountId}`;
  await db.sql`update instances set frontend_url = 'https://ada.mindroom.test', matrix_url = 'https://matrix-ada.mindroom.test' where id = ${c.instanceId}`;
  const [a] = await db.sql<{ email: string }[]>`select email from accounts where id = ${c.accountId}`;
  return { ...c, email: a!.email };
}

async function queue(c: { accountId: string; instanceId: string }, kind: string): Promise<void> {
  await db.sql`
    insert into notifications (account_id, instance_id, kind, dedupe_key, recipient, subject, body)
    select a.id, ${c.instanceId}, ${kind}, ${`${kind}:${c.instanceId}`}, a.email, ${`subject of ${kind}`}, 'stored body'
      from accounts a where a.id = ${c.accountId}`;
}

async function claimOne(): Promise<ClaimedNotification> {
  const claimed = await claimDue(db.sql, 10, 60_000);
  expect(claimed).toHaveLength(1);
  await db.sql`update notifications set sent_at = now() where id = ${claimed[0]!.id}`;
  return claimed[0]!;
}

test("welcome: the instance's URLs and how to sign in", async () => {
  const c = await customer();
  await queue(c, "welcome");
  const mail = renderNotification(await claimOne(), context);
  expect(mail.subject).toBe("subject of welcome");
  expect(mail.text).toContain("Hello Ada <b>Lovelace</b>,");
  expect(mail.text).toContain("https://ada.mindroom.test");
  expect(mail.text).toContain("https://matrix-ada.mindroom.test");
  expect(mail.text).toContain(`Sign in with this email address (${c.email})`);
  expect(mail.html).toContain('<a href="https://ada.mindroom.test">');
  expect(mail.html).toContain("Ada &lt;b&gt;Lovelace&lt;/b&gt;");
  expect(mail.html).not.toContain("<b>");
  expect(mail.html).not.toMatch(/<img|utm_|track/i);
});

test("cancellation: the retention date and a working, time-limited download link for the final backup", async () => {
  const c = await customer();
  const [backup] = await db.sql<{ id: string }[]>`
    insert into instance_backups (instance_id, backup_type, status, location, size_bytes, sha256, expires_at, completed_at)
    values (${c.instanceId}, 'manual', 'completed', 'k/final.tar.enc', 10, ${"a".repeat(64)}, '2030-02-01T00:00:00Z', now())
    returning id::text as id`;
  await queue(c, "cancellation");
  const mail = renderNotification(await claimOne(), context);
  expect(mail.text).toContain("We keep its final backup until 2030-02-01");
  const url = /https:\/\/controller\.mindroom\.test\S+/.exec(mail.text)?.[0];
  expect(url).toBeDefined();
  expect(verifyDownloadUrl(MASTER_KEY, url!, NOW)).toBe(backup!.id);
  expect(verifyDownloadUrl(MASTER_KEY, url!, new Date(NOW.getTime() + 8 * 86_400_000)), "the link expires").toBeUndefined();
  expect(mail.text).toContain("the link works until 2030-01-09");
  const withoutLinks = renderNotification({ ...(await reclaim()), kind: "cancellation" }, { now: NOW, gracePeriodMs: 7 * 86_400_000, downloadLink: () => undefined });
  expect(withoutLinks.text).toContain("reply to this email");
});

async function reclaim(): Promise<ClaimedNotification> {
  await db.sql`update notifications set sent_at = null, claimed_until = null where kind = 'cancellation'`;
  return claimOne();
}

test("health alert: what failed, once per incident", async () => {
  const c = await customer();
  const alert = { instanceId: c.instanceId, incidentKey: "2030-01-02T00:00:00.000Z", reason: "backend failed 3 restarts", components: ["backend" as const] };
  expect(await raiseHealthAlert(db.sql, alert)).toBe(true);
  expect(await raiseHealthAlert(db.sql, alert)).toBe(false);
  const [customerAlert, ...more] = await claimKind("health_alert");
  expect(more, "once per incident").toEqual([]);
  const mail = renderNotification(customerAlert!, context);
  const [i] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${c.instanceId}`;
  expect(mail.subject).toBe(`MindRoom instance ${i!.subdomain} is unhealthy`);
  expect(mail.text).toContain(`Your MindRoom instance ${i!.subdomain} has stopped answering health checks`);
  expect(mail.text).toContain("(backend failed 3 restarts)");
  expect(mail.html).toContain("backend failed 3 restarts");
});

/** Every due notification of one kind, claimed and marked sent. */
async function claimKind(kind: string): Promise<ClaimedNotification[]> {
  const claimed = (await claimDue(db.sql, 100, 60_000)).filter((n) => n.kind === kind);
  await db.sql`update notifications set sent_at = now() where sent_at is null`;
  return claimed;
}

test("past_due: queued once when the subscription enters past_due; says when the grace period ends", async () => {
  const c = await customer();
  await db.sql`update subscriptions set status = 'past_due', past_due_since = ${NOW} where account_id = ${c.accountId}`;
  await db.sql`update subscriptions set cancel_at_period_end = true where account_id = ${c.accountId}`; // another update: no second notice
  const [n, ...more] = await claimKind("past_due");
  expect(more).toEqual([]);
  expect(n!.recipient).toBe(c.email);
  const mail = renderNotification(n!, context);
  expect(mail.text).toContain("did not go through");
  expect(mail.text).toContain("2030-01-09"); // NOW + 7 days
  expect(mail.html).not.toContain("<b>Lovelace</b>");
});

test("stopped: a pause by the owner and a suspension by billing say different things", async () => {
  const c = await customer();
  await db.sql`update instances set desired_state = 'stopped' where id = ${c.instanceId}`;
  await db.sql`update instances set status = 'stopped' where id = ${c.instanceId}`;
  const [paused] = await claimKind("stopped");
  expect(renderNotification(paused!, context).text).toMatch(/is paused, as requested.*Resume it from the dashboard/s);
  const d = await customer();
  await db.sql`update subscriptions set status = 'unpaid' where account_id = ${d.accountId}`;
  await db.sql`update instances set status = 'stopped' where id = ${d.instanceId}`;
  const [suspended] = await claimKind("stopped");
  expect(renderNotification(suspended!, context).text).toMatch(/stopped because your subscription is unpaid.*starts again as soon as the subscription is paid/s);
});

test("usage_limit: messages at 80 % and 100 % of the day's limit, storage at 80 %, each once", async () => {
  const c = await customer();
  const [sub] = await db.sql<{ id: string; max: number }[]>`select id, max_messages_per_day as max from subscriptions where account_id = ${c.accountId}`;
  const max = sub!.max;
  await db.sql`update subscriptions set messages_today = ${Math.ceil(max * 0.8)} where id = ${sub!.id}`;
  await db.sql`update subscriptions set messages_today = ${Math.ceil(max * 0.8) + 1} where id = ${sub!.id}`;
  await db.sql`update subscriptions set messages_today = ${max} where id = ${sub!.id}`;
  const messages = await claimKind("usage_limit");
  expect(messages.map((n) => n.payload.percent)).toEqual([80, 100]);
  expect(renderNotification(messages[1]!, context).text).toMatch(/used 100 % of today's messages.*restarts at 00:00 UTC/s);
  const [quota] = await db.sql<{ gb: number }[]>`select max_storage_gb as gb from subscriptions where id = ${sub!.id}`;
  await db.sql`insert into usage_metrics (instance_id, date, storage_bytes) values (${c.instanceId}, '2030-01-02', ${Math.ceil(quota!.gb * 1073741824 * 0.85)})`;
  const storage = await claimKind("usage_limit");
  expect(storage.map((n) => [n.payload.limit, n.payload.percent])).toEqual([["storage", 80]]);
  expect(renderNotification(storage[0]!, context).text).toContain("used 80 % of your storage");
});

test("operator alerts: a failed instance and a failed backup go to the operator, an over-limit manual request does not", async () => {
  const c = await customer();
  await raiseHealthAlert(db.sql, { instanceId: c.instanceId, incidentKey: "2030-01-02T00:00:00.000Z", reason: "backend failed 3 restarts", components: ["backend"] });
  await db.sql`insert into instance_backups (instance_id, backup_type, status, component) values (${c.instanceId}, 'automatic', 'in_progress', 'backend')`;
  await db.sql`update instance_backups set status = 'failed', error = 'host unreachable' where instance_id = ${c.instanceId} and backup_type = 'automatic'`;
  await db.sql`insert into instance_backups (instance_id, backup_type, status, component) values (${c.instanceId}, 'manual', 'requested', 'backend')`;
  await db.sql`update instance_backups set status = 'failed', error = 'manual backup limit reached: at most 5 per instance per day' where instance_id = ${c.instanceId} and backup_type = 'manual'`;
  const alerts = await claimKind("operator_alert");
  expect(alerts.map((n) => n.recipient)).toEqual(["operator", "operator"]);
  const texts = alerts.map((n) => renderNotification(n, context).text);
  expect(texts.some((t) => t.includes("backend failed 3 restarts"))).toBe(true);
  expect(texts.some((t) => t.includes("host unreachable"))).toBe(true);
});
