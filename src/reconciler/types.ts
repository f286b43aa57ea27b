/**
 * The glossary in code. Every other reconciler module speaks in these types; the Dokku driver and
 * the state repositories implement the interfaces declared here (the consumer owns the interface).
 *
 * Terminology
 * - subscription: a row in `subscriptions`; the unit of desired state and the work-queue key.
 * - instance: the MindRoom deployment of one subscription; a row in `instances`.
 * - component: one Dokku app of an instance (`backend`, `frontend`, `matrix`).
 * - host: a Dokku server reached over SSH; a row in `dokku_hosts`.
 * - desired state: what the instance should be, from subscription, instance row, tier and clock.
 * - observed state: what the host (and the health prober) show now.
 * - plan: the ordered actions that move observed toward desired (pure).
 * - apply: executing a plan one journaled action at a time.
 * - phase: `running`, `stopped` or `deprovisioned`, the three targets of a desired state.
 * - drift: observed differs from desired for a reason other than a pending change.
 */

/** Provisioning order: the homeserver first, the backend that talks to it, then the frontend. */
export const COMPONENTS = ["matrix", "backend", "frontend"] as const;
export type Component = (typeof COMPONENTS)[number];

/** Deterministic Dokku app name (DESIGN section 7): a crash after create leaks nothing. */
export function appName(subdomain: string, component: Component): string {
  return `${subdomain}-${component}`;
}

/** Ordered from most to least alive: an override may only move a phase to the right. */
export const PHASES = ["running", "stopped", "deprovisioned"] as const;
export type Phase = (typeof PHASES)[number];

export const TIERS = ["free", "starter", "professional", "enterprise"] as const;
export type Tier = (typeof TIERS)[number];

/** Stripe's subscription statuses, verbatim. */
export const SUBSCRIPTION_STATUSES = [
  "incomplete",
  "incomplete_expired",
  "trialing",
  "active",
  "past_due",
  "canceled",
  "unpaid",
  "paused",
] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

export interface ResourceLimits {
  /** Memory limit in megabytes (`resource:limit --memory <n>m`). */
  readonly memoryMb: number;
  /** CPU limit in cores (`resource:limit --cpu <n>`). */
  readonly cpus: number;
}

/** Usage limits of a tier; null means unlimited (rendered as "unlimited"). */
export interface TierLimits {
  readonly maxAgents: number | null;
  readonly maxMessagesPerDay: number | null;
  readonly maxStorageGb: number | null;
  readonly maxPlatforms: number | null;
  readonly maxTeamMembers: number | null;
}

/** A `subscriptions` row as desired state needs it (the state layer maps rows to this). */
export interface SubscriptionState {
  readonly id: string;
  readonly accountId: string;
  readonly tier: Tier;
  readonly status: SubscriptionStatus;
  /** When `past_due` was first seen (Stripe has no such field); starts the grace clock. */
  readonly pastDueSince: Date | null;
  readonly canceledAt: Date | null;
  readonly cancelAtPeriodEnd: boolean;
  readonly currentPeriodEnd: Date | null;
  readonly region: string | null;
  readonly limits: TierLimits;
  readonly features: Readonly<Record<string, boolean>>;
  /** The tier's resource budget for the whole instance, split across components by the template. */
  readonly resources: ResourceLimits;
}

/** An `instances` row as desired state needs it. */
export interface InstanceState {
  readonly id: string;
  readonly subdomain: string;
  /** Override that may only lower the billing phase; null = follow billing. */
  readonly desiredState: Phase | null;
  readonly reconcilePaused: boolean;
  /**
   * The operator's overrides of the template (`instance_overrides.components`, unparsed; see
   * template.ts). Never anything a tenant wrote: `instances.config` does not reach desired state.
   */
  readonly overrides: unknown;
  readonly generation: number;
}

/** Persistent storage of one component: a Dokku storage entry mounted into the container. */
export interface StorageSpec {
  /** Name of the entry under /var/lib/dokku/data/storage (validated like an app name). */
  readonly entry: string;
  /** Absolute path inside the container. */
  readonly mountPath: string;
}

/** What one Dokku app of an instance should be. */
export interface DesiredApp {
  readonly component: Component;
  /** Deterministic Dokku app name: `<subdomain>-<component>`. */
  readonly app: string;
  readonly image: string;
  readonly port: number;
  readonly healthPath: string;
  readonly storage: StorageSpec | null;
  readonly domains: readonly string[];
  /** Environment, including MINDROOM_SPEC_HASH. Values are secrets: never log them. */
  readonly env: Readonly<Record<string, string>>;
  readonly resources: ResourceLimits;
  readonly tls: boolean;
  /** Content hash of everything above; carried on the app as MINDROOM_SPEC_HASH. */
  readonly specHash: string;
}

export interface DesiredInstance {
  readonly subscriptionId: string;
  readonly instanceId: string;
  readonly subdomain: string;
  readonly tier: Tier;
  readonly phase: Phase;
  /** Why this phase, in words an operator understands ("past_due since ...; grace ends ..."). */
  readonly reason: string;
  /** `reconcile_paused`: observe and report, act on nothing. */
  readonly paused: boolean;
  readonly apps: readonly DesiredApp[];
  readonly specHash: string;
  /** The next instant at which this answer changes by itself (grace or retention end), or null. */
  readonly changesAt: Date | null;
}

/** One app as the host shows it. Fields after `running` are filled only by a deep observe. */
export interface ObservedApp {
  readonly app: string;
  /** An image or source has been deployed (Dokku's `Deployed: true`). */
  readonly deployed: boolean;
  /** Every process of the app is running. */
  readonly running: boolean;
  readonly deep?: ObservedAppDetail;
}

export interface ObservedAppDetail {
  /** MINDROOM_SPEC_HASH from the app's config, or null when unset. */
  readonly specHash: string | null;
  readonly domains: readonly string[];
  /** Mounts as `host-path:container-path`, in Dokku's order. */
  readonly mounts: readonly string[];
  readonly resources: ResourceLimits | null;
  /** The deployed image (`git:report` source image), or null when not known. */
  readonly image: string | null;
  readonly tls: boolean;
  /**
   * The app's whole environment (`config:export --format json`, byte-exact), so a value edited by
   * hand is found even when MINDROOM_SPEC_HASH was left alone. Secrets: never log it.
   */
  readonly env?: Readonly<Record<string, string>>;
}

/** The whole host, observed in a constant number of SSH commands. */
export interface ObservedHost {
  readonly hostId: string;
  readonly dokkuVersion: string;
  readonly apps: ReadonlyMap<string, ObservedApp>;
  readonly observedAt: Date;
}

/**
 * An external action. `apply` maps each kind to driver calls with an exhaustive switch. Every
 * action is idempotent against the real Dokku CLI: an answer that means "already so" is success.
 */
export type Action =
  | { readonly kind: "createApp"; readonly app: string }
  | { readonly kind: "ensureStorage"; readonly app: string; readonly storage: StorageSpec }
  | { readonly kind: "setConfig"; readonly app: string; readonly env: Readonly<Record<string, string>> }
  | { readonly kind: "setResources"; readonly app: string; readonly resources: ResourceLimits }
  | { readonly kind: "setDomains"; readonly app: string; readonly domains: readonly string[] }
  | { readonly kind: "deployImage"; readonly app: string; readonly image: string }
  | { readonly kind: "enableTls"; readonly app: string }
  | { readonly kind: "start"; readonly app: string }
  | { readonly kind: "stop"; readonly app: string }
  | { readonly kind: "restart"; readonly app: string }
  /** `backupId` null: a new row of `backupType` is begun (teardown); else the claimed row is filled. */
  | { readonly kind: "backup"; readonly app: string; readonly storage: StorageSpec; readonly backupType: BackupType; readonly backupId: string | null }
  | { readonly kind: "restore"; readonly app: string; readonly storage: StorageSpec; readonly backupId: string; readonly restoreId: string }
  | { readonly kind: "destroyApp"; readonly app: string }
  | { readonly kind: "destroyStorage"; readonly app: string; readonly storage: StorageSpec };

export type ActionKind = Action["kind"];

/** The actions that move archive bytes (Driver.transfer). */
export type ArchiveAction = Extract<Action, { kind: "backup" | "restore" }>;
export type ArchiveTransfer =
  | { readonly action: Extract<Action, { kind: "backup" }>; readonly sink: NodeJS.WritableStream }
  | { readonly action: Extract<Action, { kind: "restore" }>; readonly source: NodeJS.ReadableStream };

/** Actions that change a host; everything except observing. */
export const MUTATING_ACTIONS: readonly ActionKind[] = [
  "createApp",
  "ensureStorage",
  "setConfig",
  "setResources",
  "setDomains",
  "deployImage",
  "enableTls",
  "start",
  "stop",
  "restart",
  "backup",
  "restore",
  "destroyApp",
  "destroyStorage",
];

/** How the controller reaches one host. */
export interface HostRef {
  readonly id: string;
  readonly name: string;
  /** `ssh://dokku@host:22` */
  readonly sshUrl: string;
  /** Pinned host key (OpenSSH public-key line), or null to learn it on first contact. */
  readonly hostKey: string | null;
  /**
   * Longest command line this host's SSH server accepts (`dokku_hosts.max_command_bytes`); the
   * driver's default (real Dokku's) when absent. A longer command is refused before it is sent.
   */
  readonly maxCommandBytes?: number;
}

/**
 * The Dokku hosts, as the reconciler needs them. Implemented by src/drivers/dokku/driver.ts.
 *
 * Contracts: every method may be called concurrently from many workers; the driver enforces the
 * per-host concurrency limit and never runs two mutating commands for one app at once. Errors are
 * `TerminalError` (do not retry), `OutcomeUnknownError` (the connection dropped mid-command:
 * observe again before acting) or any other Error (retry with backoff).
 */
export interface Driver {
  /** Shallow state of every app on the host, in O(1) SSH commands. Read-only. */
  observeHost(host: HostRef, signal?: AbortSignal): Promise<ObservedHost>;
  /** Shallow state of the given apps (one command each); an app that does not exist is absent. */
  observeApps(host: HostRef, apps: readonly string[], signal?: AbortSignal): Promise<Map<string, ObservedApp>>;
  /** Deep state of one app, or undefined when the app does not exist. Read-only. */
  observeApp(host: HostRef, app: string, signal?: AbortSignal): Promise<ObservedApp | undefined>;
  /** Runs one action (not `backup` or `restore`). Idempotent: "already so" answers are success. */
  apply(host: HostRef, action: Exclude<Action, ArchiveAction>, signal?: AbortSignal): Promise<void>;
  /**
   * Moves archive bytes, untouched. `backup`: streams a tar.gz of the storage entry into `sink`.
   * `restore`: replaces the entry's whole contents with the tar.gz read from `source` (the app
   * should be stopped). Resolves when complete. A restore is idempotent as a whole: redoing it
   * with the same archive gives the same contents.
   */
  transfer(host: HostRef, transfer: ArchiveTransfer, signal?: AbortSignal): Promise<void>;
  /** Closes every connection. Idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Repositories the reconciler needs. Implemented in src/state/ over Postgres; every write that
// records an external action carries the leader's epoch and is refused when the epoch is stale.

export type InstanceStatus =
  | "pending"
  | "provisioning"
  | "running"
  | "stopping"
  | "stopped"
  | "deprovisioning"
  | "deprovisioned"
  | "failed"
  | "error";

export type HealthStatus = "unknown" | "healthy" | "degraded" | "critical" | "unreachable";

/** The aggregate the prober writes to `instances.health_status` (never "unknown": that is "not probed yet"). */
export type AggregateHealth = Exclude<HealthStatus, "unknown">;

export interface Condition {
  readonly type: "Ready" | "Synced" | "Healthy" | "BackedUp" | "Restored";
  readonly status: "True" | "False" | "Unknown";
  readonly reason: string;
  readonly message: string;
  readonly lastTransitionTime: string;
  readonly observedGeneration: number;
}

/** Everything one pass reads about one subscription, in one consistent read. */
export interface ReconcileSubject {
  readonly subscription: SubscriptionState;
  readonly tier: Tier;
  /** The live instance (status <> deprovisioned), or null when there is none. */
  readonly instance: InstanceRecord | null;
  readonly host: HostRef | null;
  /** Instances this subscription ever had, deprovisioned ones included (0: never provisioned). */
  readonly instanceCount: number;
}

export interface InstanceRecord extends InstanceState {
  readonly accountId: string;
  readonly status: InstanceStatus;
  readonly observedGeneration: number;
  readonly conditions: readonly Condition[];
  readonly healthStatus: HealthStatus;
  readonly hostId: string | null;
}

export interface StatusUpdate {
  readonly status: InstanceStatus;
  readonly conditions: readonly Condition[];
  /** Set when the pass converged on this generation; otherwise the old value stays. */
  readonly observedGeneration: number | null;
  readonly lastError: string | null;
  /**
   * A terminal refusal (bad override, image off the allow-list, a command that cannot fit):
   * audited as `instance.reconcile_refused` when it differs from the last error recorded.
   */
  readonly refusal?: { readonly reason: string; readonly message: string } | null;
  readonly urls: { readonly frontend: string; readonly backend: string; readonly matrix: string } | null;
}

/** Reads and status writes of instances. Idempotent; safe from many workers (one key each). */
export interface InstanceStore {
  load(subscriptionId: string): Promise<ReconcileSubject | undefined>;
  /** Inserts the desired instance of a subscription that has none (`provision_instance`). */
  provision(subscriptionId: string): Promise<void>;
  /** Places an unplaced instance on the enabled host with most free capacity; stays there. */
  place(instanceId: string, region: string | null): Promise<HostRef | undefined>;
  /** Writes status and audits a status transition (`previous` differs from `update.status`). */
  writeStatus(instanceId: string, previous: InstanceStatus, update: StatusUpdate): Promise<void>;
  /** Every subscription id that may need reconciling (for the periodic resync). */
  listKeys(): Promise<string[]>;
  /**
   * One bulk read for a resync wave: every live instance the database shows settled (converged on
   * its generation, no error, not paused, healthy or not yet probed, and no open journal entry,
   * requested backup, active restore or restart request), by subscription id.
   */
  settled(): Promise<Map<string, SettledRow>>;
}

/** What the wave's bulk read says of one settled instance (see `InstanceStore.settled`). */
export interface SettledRow {
  readonly instanceId: string;
  readonly generation: number;
  readonly hostId: string;
  readonly status: InstanceStatus;
  readonly healthStatus: HealthStatus;
  /** Subscription fields that change the desired state's wording without a new generation. */
  readonly cancelAtPeriodEnd: boolean;
  readonly currentPeriodEnd: Date | null;
}

/** The intent journal (`instance_operations`). */
export interface Journal {
  /** Records intent before the action runs; refused (throws) when `epoch` is stale. */
  begin(entry: { instanceId: string; action: string; target: string; paramsHash: string; epoch: number }): Promise<number>;
  finish(id: number, outcome: "succeeded" | "failed" | "unknown", error: string | null, epoch: number): Promise<void>;
  /**
   * Records that action `succeededId` succeeded and the intent of the next one in one round trip
   * (one write per action instead of two); refused as a whole when `entry.epoch` is stale.
   */
  advance(succeededId: number, entry: { instanceId: string; action: string; target: string; paramsHash: string; epoch: number }): Promise<number>;
  /**
   * Turns this instance's `pending` rows (left by a crash) into `unknown`; returns how many
   * `unknown` rows the instance now has (this crash's and any earlier pass's still unresolved).
   */
  recoverPending(instanceId: string, epoch: number): Promise<number>;
  /**
   * Resolves this instance's `unknown` rows after a deep observation: `superseded` when the plan
   * made from it does the same action on the same target again (the new row records the outcome),
   * and always for backup and restore actions (their own records resume the work); `succeeded`
   * when the observation left nothing of it to do. Returns how many rows it resolved.
   */
  resolveUnknown(instanceId: string, replanned: readonly { action: string; target: string }[], epoch: number): Promise<number>;
  /** Targets of this instance's succeeded actions of one kind (e.g. storage entries destroyed). */
  succeededTargets(instanceId: string, action: ActionKind): Promise<ReadonlySet<string>>;
}

export const BACKUP_TYPES = ["manual", "automatic", "pre_deprovision", "pre_upgrade", "pre_restore", "import"] as const;
export type BackupType = (typeof BACKUP_TYPES)[number];

export interface BackupRecord {
  readonly id: string;
  readonly component: Component;
  readonly type: BackupType;
}

/** Backup bookkeeping (`instance_backups`) and the bytes' destination (the backup store). */
export interface Backups {
  /** A new in-progress backup (teardown and safety backups). */
  begin(instanceId: string, component: Component, type: BackupType): Promise<BackupRecord>;
  /** Opens a sink for the tar.gz bytes; `commit` encrypts-and-stores and records location, size and sha256. */
  open(instanceId: string, record: BackupRecord): Promise<BackupSink>;
  fail(record: BackupRecord, error: string): Promise<void>;
  /** Components with a completed pre_deprovision backup newer than `since`. */
  completedTeardownBackups(instanceId: string, since: Date | null): Promise<ReadonlySet<Component>>;
  /**
   * The instance's requested (manual, automatic) backups, claimed for this pass: one record per
   * component in `components`; requests over the manual limit are failed with the reason.
   */
  claimRequested(instanceId: string, components: readonly Component[]): Promise<BackupRecord[]>;
}

/** A restore of one component's storage from a completed backup (`instance_restores`). */
export interface RestoreRequest {
  readonly id: string;
  readonly backupId: string;
  readonly component: Component;
  /** The safety backup of the current data, once begun (a redone restore does not take another once it completed). */
  readonly safetyBackupId: string | null;
  readonly safetyCompleted: boolean;
  /** The storage was already replaced (a crash after that step does not replace it again). */
  readonly replaced: boolean;
}

/** Restore bookkeeping and the archive's bytes, verified and decrypted. Called by the leader's pass. */
export interface Restores {
  /** The instance's restore to work on now (one in progress first, then the oldest requested). */
  next(instanceId: string): Promise<RestoreRequest | undefined>;
  /** Marks the restore in progress and records its safety backup (before that backup is taken). */
  started(id: string, safetyBackupId: string): Promise<void>;
  /** Records that the storage was replaced; called by the restore step as soon as it succeeded. */
  replaced(id: string): Promise<void>;
  /**
   * Reads the whole archive once to check it (sha256, size, decryption), then opens it again for
   * the restore: a corrupt backup fails before any data is touched.
   */
  openVerified(backupId: string, signal: AbortSignal): Promise<NodeJS.ReadableStream>;
  finished(id: string, error: string | null): Promise<void>;
}

export interface BackupSink {
  readonly stream: NodeJS.WritableStream;
  commit(): Promise<{ location: string; sizeBytes: number; sha256: string }>;
  abort(): Promise<void>;
}

/** The leader lease after one acquire-or-renew attempt (database clock). */
export interface LeaseState {
  /** True when the caller holds the lease now (acquired or renewed by this attempt). */
  readonly leader: boolean;
  /** The lease epoch: bumped on every change of term, it fences a stale leader's journal writes. */
  readonly epoch: number;
  /** Current holder, or null when nobody ever held the lease. */
  readonly holder: string | null;
  readonly expiresAt: Date;
}

/**
 * The leader lease row (`controller_leases`). Implemented by src/state/lease.ts; used by the
 * LeaderElector. Both calls are single atomic statements timed by the database clock, so replicas
 * with skewed clocks still agree; each blocks for one round-trip and may be called concurrently.
 */
export interface LeaseStore {
  /**
   * Takes the lease if it is missing or expired (epoch + 1), renews it if the caller holds it
   * (same epoch, expiry pushed to now + ttl), otherwise reports the holder. Idempotent per period.
   */
  acquireOrRenew(lease: { readonly name: string; readonly holder: string; readonly ttlMs: number }): Promise<LeaseState>;
  /** Expires the lease now if the caller holds it (true), so another replica takes over at once. */
  release(lease: { readonly name: string; readonly holder: string }): Promise<boolean>;
}
