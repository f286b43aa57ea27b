/**
 * The instance template: what every instance is made of, one entry per component. Parsed with zod
 * from `unknown` (a file, a config value, or nothing: the defaults below), so a bad template fails
 * at start-up, not during a reconcile. The operator's per-instance overrides (`instance_overrides`)
 * are parsed here too, and a bad one is a TerminalError naming the field (retrying cannot fix a
 * bad row). Tenants set none of this: `instances.config` never reaches desired state.
 */
import { z } from "zod";

import { TerminalError } from "../errors.ts";
import { type Component, COMPONENTS } from "./types.ts";

/**
 * Images are sent unquoted to `git:from-image` (reference/dokku-cli.md section 3.1a), so they must
 * match the driver's strict pattern; anything else could be re-split by Dokku's forced command.
 */
export const IMAGE_PATTERN = /^[A-Za-z0-9._/:@+-]+$/;
/** Placeholders allowed in domain and storage-entry patterns. */
export const SUBDOMAIN_PLACEHOLDER = "{subdomain}";
export const BASE_DOMAIN_PLACEHOLDER = "{baseDomain}";
/** Environment keys an instance override may set (the controller's own keys are refused later). */
export const ENV_KEY_PATTERN = /^[A-Z][A-Z0-9_]{0,63}$/;

const image = z.string().min(1).max(255).regex(IMAGE_PATTERN, "must match ^[A-Za-z0-9._/:@+-]+$");

const componentTemplateSchema = z
  .object({
    image,
    port: z.number().int().min(1).max(65535),
    healthPath: z.string().regex(/^\/[A-Za-z0-9._~/-]*$/, "must be an absolute URL path"),
    /** Hostname pattern, e.g. `{subdomain}-api.{baseDomain}`. */
    domain: z.string().includes(SUBDOMAIN_PLACEHOLDER).includes(BASE_DOMAIN_PLACEHOLDER),
    /** Persistent storage: entry-name pattern (e.g. `{subdomain}-backend-data`) and mount path. */
    storage: z
      .object({
        entry: z.string().includes(SUBDOMAIN_PLACEHOLDER),
        mountPath: z.string().regex(/^\/[A-Za-z0-9._/-]*$/, "must be an absolute container path"),
      })
      .strict()
      .nullable(),
    /**
     * Fraction of the tier's memory and CPU this component gets. The tier's resources are the
     * instance's budget; the default shares sum to 1 so an instance never exceeds its tier.
     */
    resourceShare: z.number().gt(0).max(1),
  })
  .strict();

export type ComponentTemplate = z.infer<typeof componentTemplateSchema>;

export const DEFAULT_TEMPLATE: Readonly<Record<Component, ComponentTemplate>> = {
  matrix: {
    image: "docker.io/matrixdotorg/synapse:v1.128.0",
    port: 8008,
    healthPath: "/_matrix/client/versions",
    domain: "{subdomain}-matrix.{baseDomain}",
    storage: { entry: "{subdomain}-matrix-data", mountPath: "/data" },
    resourceShare: 0.35,
  },
  backend: {
    image: "ghcr.io/mindroom-ai/mindroom-backend:v0.4.2",
    port: 8765,
    healthPath: "/api/health",
    domain: "{subdomain}-api.{baseDomain}",
    storage: { entry: "{subdomain}-backend-data", mountPath: "/data" },
    resourceShare: 0.5,
  },
  frontend: {
    image: "ghcr.io/mindroom-ai/mindroom-frontend:v0.4.2",
    port: 3003,
    healthPath: "/",
    domain: "{subdomain}.{baseDomain}",
    storage: null,
    resourceShare: 0.15,
  },
};

/** Each component may be partially overridden; omitted fields keep the defaults above. */
const templateSchema = z
  .object({
    matrix: componentTemplateSchema.partial().strict().optional(),
    backend: componentTemplateSchema.partial().strict().optional(),
    frontend: componentTemplateSchema.partial().strict().optional(),
  })
  .strict();

export type InstanceTemplate = Readonly<Record<Component, ComponentTemplate>>;

/** Parses a template (e.g. from a JSON file); `undefined` gives the defaults. Throws on misuse. */
export function parseTemplate(input: unknown = {}): InstanceTemplate {
  const parsed = templateSchema.safeParse(input);
  if (!parsed.success) throw new Error(`invalid instance template: ${formatIssues(parsed.error, "template")}`);
  const merged = {} as Record<Component, ComponentTemplate>;
  for (const component of COMPONENTS) {
    // Re-validate the merged entry: a partial override must still give a complete component.
    merged[component] = componentTemplateSchema.parse({ ...DEFAULT_TEMPLATE[component], ...parsed.data[component] });
  }
  return Object.freeze(merged);
}

const componentOverrideSchema = z
  .object({
    image: image.optional(),
    /** Extra environment for this component; the controller's own keys cannot be overridden. */
    env: z
      .record(z.string().regex(ENV_KEY_PATTERN, "environment keys must be upper-case identifiers"), z.string().max(4096))
      .optional(),
  })
  .strict();

/**
 * `instance_overrides.components` (jsonb, operator-only; migration 0007 checks the same shape in
 * SQL). Strict at every level, so a typo does not silently do nothing.
 */
const componentOverridesSchema = z
  .object({
    matrix: componentOverrideSchema.optional(),
    backend: componentOverrideSchema.optional(),
    frontend: componentOverrideSchema.optional(),
  })
  .strict();

export type ComponentOverride = z.infer<typeof componentOverrideSchema>;
export type InstanceOverrides = { readonly [C in Component]?: ComponentOverride | undefined };

/** Where the overrides live, for error messages: the operator knows where to look. */
export const OVERRIDES_FIELD = "instance_overrides.components";

/**
 * Parses the operator's overrides of one instance. A bad value is a TerminalError whose message
 * names the field (`instance_overrides.components.backend.image: ...`) but never echoes the value.
 */
export function parseInstanceOverrides(components: unknown): InstanceOverrides {
  const parsed = componentOverridesSchema.safeParse(components ?? {});
  if (!parsed.success) {
    throw new TerminalError("invalid_instance_overrides", `invalid instance overrides: ${formatIssues(parsed.error, OVERRIDES_FIELD)}`);
  }
  return parsed.data;
}

/**
 * The repository of an image reference: without `@digest` and without the `:tag` after the last
 * `/` (a `:` before it is a registry port). Compared as written: `nginx` and
 * `docker.io/library/nginx` are different repositories to the allow-list.
 */
export function imageRepository(image: string): string {
  const withoutDigest = image.split("@", 1)[0] ?? image;
  const lastSlash = withoutDigest.lastIndexOf("/");
  const tagColon = withoutDigest.indexOf(":", lastSlash + 1);
  return tagColon === -1 ? withoutDigest : withoutDigest.slice(0, tagColon);
}

/**
 * Whether an image may be deployed. An allow-list entry ending in `/` admits every repository
 * under that registry path (`ghcr.io/mindroom-ai/`); any other entry admits exactly that
 * repository, with any tag or digest.
 */
export function imageAllowed(image: string, allowlist: readonly string[]): boolean {
  const repository = imageRepository(image);
  return allowlist.some((entry) => (entry.endsWith("/") ? repository.startsWith(entry) : repository === entry));
}

/** The default IMAGE_ALLOWLIST: exactly the template's repositories. */
export function templateRepositories(template: InstanceTemplate): string[] {
  return [...new Set(COMPONENTS.map((component) => imageRepository(template[component].image)))];
}

/** `path.to.field: message; ...`, without input values (they may be secrets). */
function formatIssues(error: z.ZodError, root: string): string {
  return error.issues.map((issue) => `${[root, ...issue.path.map(String)].join(".")}: ${issue.message}`).join("; ");
}
