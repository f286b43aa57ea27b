/**
 * The emails the outbox sends, rendered from the rows as they are at delivery (pure: no IO, no
 * clock; `now` and the link signer are passed in). Short and plain, text and HTML, no tracking:
 * no images, no redirects, no per-recipient links beyond the signed backup download.
 */
import type { ClaimedNotification } from "../state/notifications.ts";

export interface RenderedMail {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface RenderContext {
  readonly now: Date;
  /** An absolute, time-limited download URL for a backup, or undefined when links are off. */
  readonly downloadLink: (backupId: string, now: Date) => { url: string; expiresAt: Date } | undefined;
  /** GRACE_PERIOD: how long a past_due subscription keeps running. */
  readonly gracePeriodMs: number;
}

/** A message as paragraphs; a paragraph that is a URL becomes a link in the HTML part. */
type Paragraphs = readonly string[];

const SIGNATURE = "— MindRoom";

export function renderNotification(n: ClaimedNotification, context: RenderContext): RenderedMail {
  switch (n.kind) {
    case "welcome":
      return mail(n.subject, welcome(n));
    case "cancellation":
      return mail(n.subject, cancellation(n, context));
    case "health_alert":
      return mail(n.subject, healthAlert(n));
    case "past_due":
      return mail(n.subject, pastDue(n, context));
    case "stopped":
      return mail(n.subject, stopped(n));
    case "usage_limit":
      return mail(n.subject, usageLimit(n));
    default:
      // Kinds without a template of their own send what the producer stored.
      return mail(n.subject, [greeting(n), ...n.body.split(/\n{2,}/)]);
  }
}

function greeting(n: ClaimedNotification): string {
  return n.accountName ? `Hello ${n.accountName},` : "Hello,";
}

function welcome(n: ClaimedNotification): Paragraphs {
  const i = n.instance;
  const app = i?.frontendUrl ?? i?.subdomain ?? "your instance";
  return [
    greeting(n),
    "Your MindRoom instance is ready. Open it here:",
    app,
    ...(i?.matrixUrl ? ["Chat clients connect to your Matrix server at:", i.matrixUrl] : []),
    `Sign in with this email address (${n.recipient}). If you have no password yet, use "Forgot password" on the sign-in page to set one.`,
  ];
}

function cancellation(n: ClaimedNotification, context: RenderContext): Paragraphs {
  const backup = n.finalBackup;
  const retained = backup?.expiresAt ? `We keep its final backup until ${day(backup.expiresAt)}; after that it is deleted for good.` : "";
  const link = backup ? context.downloadLink(backup.id, context.now) : undefined;
  return [
    greeting(n),
    `Your MindRoom instance ${n.instance?.subdomain ?? ""} was removed after your subscription ended. ${retained}`.trim(),
    ...(link ? [`Download the final backup (the link works until ${day(link.expiresAt)}):`, link.url] : backup ? ["To get a copy of the final backup, reply to this email."] : []),
    "Thank you for using MindRoom.",
  ];
}

function healthAlert(n: ClaimedNotification): Paragraphs {
  const reason = typeof n.payload.reason === "string" ? n.payload.reason : "health checks failing";
  return [
    greeting(n),
    `Your MindRoom instance ${n.instance?.subdomain ?? ""} has stopped answering health checks, and automatic restarts did not help (${reason}).`,
    "We are looking into it and will write again when it is back. You do not need to do anything.",
  ];
}

function pastDue(n: ClaimedNotification, context: RenderContext): Paragraphs {
  const since = typeof n.payload.past_due_since === "string" ? new Date(n.payload.past_due_since) : context.now;
  const graceEnds = new Date(since.getTime() + context.gracePeriodMs);
  return [
    greeting(n),
    "Your last MindRoom payment did not go through. Your instance keeps running while Stripe retries the payment.",
    `If the payment still fails on ${day(graceEnds)}, your instance stops until it is paid. Nothing is deleted then: your data is kept, and the instance starts again as soon as the subscription is paid.`,
    "To fix it now, update your payment method in the billing portal.",
  ];
}

function stopped(n: ClaimedNotification): Paragraphs {
  const subdomain = n.instance?.subdomain ?? "";
  const byOwner = n.payload.desired_state === "stopped";
  const status = typeof n.payload.subscription_status === "string" ? n.payload.subscription_status : "not active";
  return [
    greeting(n),
    byOwner
      ? `Your MindRoom instance ${subdomain} is paused, as requested from the dashboard (free instances also pause after 7 days without use).`
      : `Your MindRoom instance ${subdomain} is stopped because your subscription is ${status.replaceAll("_", " ")}.`,
    "Its data is kept. " + (byOwner ? "Resume it from the dashboard whenever you like." : "It starts again as soon as the subscription is paid."),
  ];
}

function usageLimit(n: ClaimedNotification): Paragraphs {
  const percent = Number(n.payload.percent);
  const what = n.payload.limit === "storage" ? "of your storage" : "of today's messages";
  return [
    greeting(n),
    `Your MindRoom instance ${n.instance?.subdomain ?? ""} has used ${percent} % ${what} (${String(n.payload.used)} of ${String(n.payload.max)}${n.payload.limit === "storage" ? " bytes" : ""}).`,
    percent >= 100
      ? n.payload.limit === "storage" ? "New data may be refused until you free space or upgrade your plan." : "Further messages today may be refused; the count restarts at 00:00 UTC. A larger plan raises the limit."
      : "Nothing changes yet; this is a heads-up so you are not surprised.",
  ];
}

function day(date: Date): string {
  return date.toISOString().slice(0, 10);
}

function mail(subject: string, paragraphs: Paragraphs): RenderedMail {
  const all = [...paragraphs, SIGNATURE];
  return {
    subject,
    text: `${all.join("\n\n")}\n`,
    html: `<!doctype html>\n<html><body>\n${all.map((p) => `<p>${isUrl(p) ? `<a href="${escapeHtml(p)}">${escapeHtml(p)}</a>` : escapeHtml(p)}</p>`).join("\n")}\n</body></html>\n`,
  };
}

function isUrl(text: string): boolean {
  return /^https?:\/\/\S+$/.test(text);
}

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c] ?? c);
}
