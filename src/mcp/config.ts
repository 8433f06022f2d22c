import fs from "node:fs";
import path from "node:path";
import { z } from "zod";

/**
 * Where a decision's resource comes from: a fixed string, or a value of the request — an argument
 * of the tool or prompt (`arguments.environment`, dotted for nested values) or the resource's URI
 * (`uri`) — with an optional prefix.
 */
const ResourceSpec = z.union([
  z.string().min(1).max(1000),
  z
    .object({
      from: z.string().regex(/^(uri|arguments(\.[^.\s]+)+)$/, 'either "uri" or "arguments.<name>" (dotted for nested values)'),
      prefix: z.string().max(200).optional(),
    })
    .strict(),
]);
export type ResourceSpec = z.infer<typeof ResourceSpec>;

/** What a tool, prompt or resource means to CLAIIM: an action on a resource, under one of the agent's skills. */
const Governed = z
  .object({
    action: z.string().min(1).max(200),
    resource: ResourceSpec,
    /** The agent's skill the action is taken under; its version is the agent's registered one. When absent, the one skill whose permissions name the action. */
    skill: z.string().min(1).max(100).optional(),
    purpose: z.string().min(1).max(2000).optional(),
  })
  .strict();
export type Governed = z.infer<typeof Governed>;

const Upstream = z.union([
  z
    .object({
      command: z.string().min(1),
      args: z.array(z.string()).default([]),
      env: z.record(z.string(), z.string()).optional(),
      cwd: z.string().optional(),
    })
    .strict(),
  z.object({ url: z.url(), headers: z.record(z.string(), z.string()).optional() }).strict(),
]);
export type UpstreamConfig = z.infer<typeof Upstream>;

const Unmapped = z.enum(["pass", "deny"]);

export const GatewayConfigSchema = z
  .object({
    claiim: z
      .object({
        /** Else CLAIIM_URL. */
        url: z.url().optional(),
        /** Else CLAIIM_CLIENT_ID. */
        client_id: z.string().min(1).optional(),
        /** The environment variable holding the client secret (default CLAIIM_CLIENT_SECRET): secrets stay out of this file. */
        client_secret_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
        /** For a private_key_jwt client: a PEM file with the agent's private key (else CLAIIM_PRIVATE_KEY_FILE). */
        private_key_file: z.string().optional(),
        assertion_audience: z.string().optional(),
      })
      .strict()
      .default({}),
    /** The purpose of a call whose request metadata names none. */
    purpose: z.string().min(1).max(2000).optional(),
    upstreams: z.record(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/), Upstream).refine((u) => Object.keys(u).length > 0, "name at least one upstream MCP server"),
    /** Every tool the agent may reach, by name. A tool not named here is hidden and refused. */
    tools: z.record(z.string().min(1).max(128), Governed).default({}),
    /** Prompts that name an action, by name; the others follow `unmapped_prompts`. */
    prompts: z.record(z.string().min(1).max(128), Governed).default({}),
    /** Resources that name an action, by URI pattern (`*` within a segment, `**` across); the first that matches applies. */
    resources: z.array(Governed.extend({ uri: z.string().min(1).max(2000) })).default([]),
    unmapped_resources: Unmapped.default("pass"),
    unmapped_prompts: Unmapped.default("pass"),
    /** How long the agent's permissions (for listing) are reused before CLAIIM is asked again. */
    permissions_cache_seconds: z.number().int().min(0).max(3600).default(5),
    /**
     * When CLAIIM answers approval_required: 0 (the default) returns a tool error naming the approval
     * at once, and the client calls again with _meta "io.claiim/approval_id"; more waits that many
     * seconds for the human within the call, then uses the approval. Keep it under the MCP host's
     * request timeout, unless the host resets it on progress notifications.
     */
    wait_for_approval_seconds: z.number().int().min(0).max(3600).default(0),
  })
  .strict();
export type GatewayConfig = z.infer<typeof GatewayConfigSchema>;

/** Reads and checks the gateway's JSON configuration; relative paths in it are relative to the file. */
export function loadGatewayConfig(file: string): { config: GatewayConfig; dir: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`cannot read the gateway configuration ${file}: ${(err as Error).message}`);
  }
  const result = GatewayConfigSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`gateway configuration ${file}: ${issue.path.join(".") || "(top)"}: ${issue.message}`);
  }
  return { config: result.data, dir: path.dirname(path.resolve(file)) };
}

/** The resource a request names, or null when the value it should come from is missing or not a string or number. */
export function resourceOf(spec: ResourceSpec, request: { arguments?: Record<string, unknown>; uri?: string }): string | null {
  if (typeof spec === "string") return spec;
  let value: unknown;
  if (spec.from === "uri") value = request.uri;
  else {
    value = request.arguments;
    for (const part of spec.from.split(".").slice(1)) value = value && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>)[part] : undefined;
  }
  if (typeof value === "number" && Number.isFinite(value)) value = String(value);
  if (typeof value !== "string" || value.length === 0) return null;
  return `${spec.prefix ?? ""}${value}`;
}

/**
 * Glob matching as the reference policy's glob.match(pattern, ["/"], value): `*` and `?` stay
 * within a path segment, `**` crosses segments, `{a,b}` is either.
 */
export function globMatch(pattern: string, value: string): boolean {
  let re = "";
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "{") (re += "(?:"), braces++;
    else if (c === "}" && braces > 0) (re += ")"), braces--;
    else if (c === "," && braces > 0) re += "|";
    else re += c.replace(/[.+^$()|[\]\\{}]/g, "\\$&");
  }
  if (braces > 0) return false;
  return new RegExp(`^${re}$`, "s").test(value);
}
