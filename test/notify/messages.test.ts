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
  const withoutLinks = renderNotification({ ...(await reclaim()), kind: "cancellation" }, { now: NOW, downloadLink: () => undefined });
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
  const mail = renderNotification(await claimOne(), context);
  const [i] = await db.sql<{ subdomain: string }[]>`select subdomain from instances where id = ${c.instanceId}`;
  expect(mail.subject).toBe(`MindRoom instance ${i!.subdomain} is unhealthy`);
  expect(mail.text).toContain(`Your MindRoom instance ${i!.subdomain} has stopped answering health checks`);
  expect(mail.text).toContain("(backend failed 3 restarts)");
  expect(mail.html).toContain("backend failed 3 restarts");
});
