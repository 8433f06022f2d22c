import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { matches, pageOf, PageQuery } from "../http/paging";
import type { IdentityService } from "./identity-service";
import type { CredentialService } from "./credential-service";
import type { ApiKeyService } from "./api-key-service";
import { Email, Name, SkillRef, Slug } from "../shared/vocabulary";
import { type Agent, type AgentCredential, type ApiKey, type Human, type Organization } from "./model";
import { actorOf, type Principal, ROLES, scopeOf } from "../shared/principal";

const Id = z.object({ id: z.string().uuid() });
const Reason = z.object({ reason: z.string().min(1).max(1000) }).strict();

const OrganizationView = z
  .object({ id: z.string(), slug: z.string(), name: z.string(), created_at: z.string() })
  .openapi("Organization");
const HumanView = z
  .object({ id: z.string(), organization: z.string(), name: z.string(), email: z.string(), status: z.enum(["active", "deactivated"]), created_at: z.string() })
  .openapi("Human");
const AgentView = z
  .object({
    id: z.string(),
    organization: z.string(),
    name: z.string(),
    description: z.string(),
    owner: z.object({ id: z.string(), name: z.string(), email: z.string(), status: z.string() }).nullable(),
    status: z.enum(["active", "suspended", "retired"]),
    status_reason: z.string().nullable(),
    skills: z.array(z.object({ name: z.string(), version: z.string(), registered_at: z.string() })),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Agent");
const CredentialView = z
  .object({ id: z.string(), agent_id: z.string(), kid: z.string(), created_at: z.string(), expires_at: z.string(), revoked_at: z.string().nullable() })
  .openapi("AgentCredential");
const ApiKeyView = z
  .object({
    id: z.string(),
    name: z.string(),
    prefix: z.string(),
    role: z.enum(ROLES as [string, ...string[]]),
    organization: z.string().nullable(),
    created_at: z.string(),
    expires_at: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .openapi("ApiKey");
const IssuedCredential = z
  .object({ credential_id: z.string(), token: z.string(), token_type: z.literal("Bearer"), kid: z.string(), expires_at: z.string() })
  .openapi("IssuedAgentCredential");

export function identityRoutes(
  { identity, credentials, apiKeys }: { identity: IdentityService; credentials: CredentialService; apiKeys: ApiKeyService },
  jwks: () => { keys: Record<string, string | number>[] },
): RouteSpec[] {
  const directory = identity.directory;
  const slugOf = (orgId: string | null) => (orgId ? (directory.organization(orgId)?.slug ?? orgId) : null);
  const orgView = (o: Organization) => ({ id: o.id, slug: o.slug, name: o.name, created_at: o.createdAt.toISOString() });
  const humanView = (h: Human) => ({ id: h.id, organization: slugOf(h.orgId)!, name: h.name, email: h.email, status: h.status, created_at: h.createdAt.toISOString() });
  const agentView = (a: Agent) => {
    const owner = directory.agentContext(a.id)?.owner;
    return {
      id: a.id,
      organization: slugOf(a.orgId)!,
      name: a.name,
      description: a.description,
      owner: owner ? { id: owner.id, name: owner.name, email: owner.email, status: owner.status } : null,
      status: a.status,
      status_reason: a.statusReason,
      skills: a.skills.map((s) => ({ name: s.name, version: s.version, registered_at: s.registeredAt.toISOString() })),
      created_at: a.createdAt.toISOString(),
      updated_at: a.updatedAt.toISOString(),
    };
  };
  const credentialView = (c: AgentCredential) => ({
    id: c.id,
    agent_id: c.agentId,
    kid: c.kid,
    created_at: c.createdAt.toISOString(),
    expires_at: c.expiresAt.toISOString(),
    revoked_at: c.revokedAt?.toISOString() ?? null,
  });
  const apiKeyView = (k: ApiKey) => ({
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    role: k.role,
    organization: slugOf(k.orgId),
    created_at: k.createdAt.toISOString(),
    expires_at: k.expiresAt?.toISOString() ?? null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
  });
  const who = (p: Principal) => ({ actor: actorOf(p), scope: scopeOf(p) });
  const orgIdOf = (p: Principal, slug?: string) => (slug ? directory.organizationBySlug(slug, scopeOf(p)).id : undefined);

  return [
    route({
      method: "get",
      path: "/.well-known/jwks.json",
      summary: "Public keys that verify the tokens and the Chron checkpoints CLAIIM signs",
      tags: ["identity"],
      access: { public: true },
      responses: { 200: { description: "JSON Web Key Set", schema: z.object({ keys: z.array(z.record(z.string(), z.string())) }) } },
      handle: () => ({ status: 200, body: jwks(), headers: { "Cache-Control": "public, max-age=300" } }),
    }),
    route({
      method: "post",
      path: "/v1/organizations",
      summary: "Create an organisation",
      tags: ["identity"],
      access: { roles: [] },
      body: z.object({ slug: Slug, name: z.string().min(1).max(200) }).strict(),
      responses: { 201: { description: "Created", schema: OrganizationView }, 409: { description: "Slug taken" } },
      handle: async ({ body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 201, body: orgView(await identity.createOrganization(body, actor, scope)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/organizations",
      summary: "List the organisations this credential may see",
      tags: ["identity"],
      access: { roles: ["auditor", "agent_manager", "policy_author"] },
      responses: { 200: { description: "Organisations", schema: z.object({ organizations: z.array(OrganizationView) }) } },
      handle: ({ principal }) => ({ status: 200, body: { organizations: directory.listOrganizations(scopeOf(principal)).map(orgView) } }),
    }),
    route({
      method: "post",
      path: "/v1/humans",
      summary: "Register a human who can be accountable for agents",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      body: z.object({ organization: Slug, name: z.string().min(1).max(200), email: Email }).strict(),
      responses: { 201: { description: "Registered", schema: HumanView }, 404: { description: "Unknown organisation" }, 409: { description: "Email taken" } },
      handle: async ({ body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 201, body: humanView(await identity.createHuman(body, actor, scope)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/humans",
      summary: "List humans",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      query: z.object({ organization: Slug.optional(), ...PageQuery }).strict(),
      responses: { 200: { description: "Humans, by email", schema: z.object({ humans: z.array(HumanView), next_cursor: z.string().nullable() }) } },
      handle: ({ query, principal }) => {
        const found = directory.listHumans(scopeOf(principal), orgIdOf(principal, query.organization)).filter((h) => matches(query.q, h.name, h.email));
        const page = pageOf(found, (h) => `${h.email}\u0000${h.id}`, query);
        return { status: 200, body: { humans: page.items.map(humanView), next_cursor: page.next_cursor } };
      },
    }),
    route({
      method: "get",
      path: "/v1/humans/{id}",
      summary: "Get a human",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: Id,
      responses: { 200: { description: "The human", schema: HumanView }, 404: { description: "Unknown human" } },
      handle: ({ params, principal }) => ({ status: 200, body: humanView(directory.human(params.id, scopeOf(principal))) }),
    }),
    route({
      method: "post",
      path: "/v1/humans/{id}/deactivate",
      summary: "Deactivate a human (they left): each of their active agents is suspended at once",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: Reason,
      responses: {
        200: { description: "Deactivated; the agents suspended with them", schema: z.object({ human: HumanView, suspended_agents: z.array(AgentView) }) },
        404: { description: "Unknown human" },
      },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        const { human, suspended } = await identity.deactivateHuman(params.id, body.reason, actor, scope);
        return { status: 200, body: { human: humanView(human), suspended_agents: suspended.map(agentView) } };
      },
    }),
    route({
      method: "post",
      path: "/v1/humans/{id}/reactivate",
      summary: "Reactivate a human; their agents stay suspended until reactivated one by one",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: Reason,
      responses: { 200: { description: "Active again", schema: HumanView }, 404: { description: "Unknown human" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: humanView(await identity.reactivateHuman(params.id, body.reason, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents",
      summary: "Register an agent, with its accountable human and its skills",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      body: z
        .object({
          organization: Slug,
          name: Name,
          description: z.string().max(2000).default(""),
          owner: z.string().min(1).max(320).openapi({ description: "The accountable human: their id or email, in the same organisation" }),
          skills: z.array(SkillRef).min(1).max(100),
        })
        .strict(),
      responses: {
        201: { description: "Registered", schema: AgentView },
        404: { description: "Unknown organisation" },
        409: { description: "Name taken in this organisation" },
      },
      handle: async ({ body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 201, body: agentView(await identity.registerAgent(body, actor, scope)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/agents",
      summary: "List agents",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      query: z
        .object({
          organization: Slug.optional(),
          owner: z.string().uuid().optional(),
          status: z.enum(["active", "suspended", "retired"]).optional(),
          skill: Name.optional(),
          ...PageQuery,
        })
        .strict(),
      responses: { 200: { description: "Agents, by name", schema: z.object({ agents: z.array(AgentView), next_cursor: z.string().nullable() }) } },
      handle: ({ query, principal }) => {
        const found = directory
          .listAgents(scopeOf(principal), { orgId: orgIdOf(principal, query.organization), ownerId: query.owner, status: query.status, skill: query.skill })
          .filter((a) => matches(query.q, a.name));
        const page = pageOf(found, (a) => `${a.name}\u0000${a.id}`, query);
        return { status: 200, body: { agents: page.items.map(agentView), next_cursor: page.next_cursor } };
      },
    }),
    route({
      method: "get",
      path: "/v1/agents/{id}",
      summary: "Get an agent",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: Id,
      responses: { 200: { description: "The agent", schema: AgentView }, 404: { description: "Unknown agent" } },
      handle: ({ params, principal }) => ({ status: 200, body: agentView(directory.agent(params.id, scopeOf(principal))) }),
    }),
    route({
      method: "patch",
      path: "/v1/agents/{id}",
      summary: "Update an agent's description or skills (the full list; a new version of a skill is a recorded change)",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z
        .object({ description: z.string().max(2000).optional(), skills: z.array(SkillRef).min(1).max(100).optional(), reason: z.string().min(1).max(1000).optional() })
        .strict()
        .refine((b) => b.description !== undefined || b.skills !== undefined, { message: "give description or skills" })
        .openapi({ anyOf: [{ required: ["description"] }, { required: ["skills"] }] }),
      responses: { 200: { description: "Updated", schema: AgentView }, 404: { description: "Unknown agent" }, 409: { description: "Retired agent" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: agentView(await identity.updateAgent(params.id, body, body.reason ?? null, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/suspend",
      summary: "Suspend an agent (the kill switch): its very next decision is a deny",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: Reason,
      responses: { 200: { description: "Suspended", schema: AgentView }, 404: { description: "Unknown agent" }, 409: { description: "Retired agent (agent_retired)" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: agentView(await identity.suspendAgent(params.id, body.reason, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/reactivate",
      summary: "Reactivate a suspended agent; its accountable human must be active",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: Reason,
      responses: { 200: { description: "Active again", schema: AgentView }, 404: { description: "Unknown agent" }, 409: { description: "Owner inactive, or agent retired" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: agentView(await identity.reactivateAgent(params.id, body.reason, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/retire",
      summary: "Retire an agent for good; its history stays",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: Reason,
      responses: { 200: { description: "Retired", schema: AgentView }, 404: { description: "Unknown agent" }, 409: { description: "Already retired (agent_retired)" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: agentView(await identity.retireAgent(params.id, body.reason, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/transfer",
      summary: "Make another active human of the organisation accountable for the agent",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z.object({ owner: z.string().min(1).max(320), reason: z.string().min(1).max(1000) }).strict(),
      responses: {
        200: { description: "Transferred", schema: AgentView },
        404: { description: "Unknown agent" },
        409: { description: "Retired agent (agent_retired), or the human is already accountable (owner_unchanged)" },
      },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: agentView(await identity.transferAgent(params.id, body.owner, body.reason, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/credentials",
      summary: "Issue a credential (a signed ES256 JWT) for an agent; the token is shown once",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z.object({ ttl_seconds: z.number().int().min(60).max(366 * 24 * 3600).optional() }).strict(),
      responses: { 201: { description: "Issued", schema: IssuedCredential }, 404: { description: "Unknown agent" }, 409: { description: "Retired agent (agent_retired)" } },
      handle: async ({ params, body, principal }) => {
        const { actor, scope } = who(principal);
        const { credential, token } = await credentials.issueCredential(params.id, body.ttl_seconds, actor, scope);
        return {
          status: 201,
          headers: { "Cache-Control": "no-store" },
          body: { credential_id: credential.id, token, token_type: "Bearer", kid: credential.kid, expires_at: credential.expiresAt.toISOString() },
        };
      },
    }),
    route({
      method: "get",
      path: "/v1/agents/{id}/credentials",
      summary: "List an agent's credentials (never the tokens)",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: Id,
      responses: { 200: { description: "Credentials", schema: z.object({ credentials: z.array(CredentialView) }) } },
      handle: ({ params, principal }) => ({ status: 200, body: { credentials: directory.listCredentials(params.id, scopeOf(principal)).map(credentialView) } }),
    }),
    route({
      method: "delete",
      path: "/v1/agents/{id}/credentials/{credential_id}",
      summary: "Revoke a credential: its token stops working at the next request",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: z.object({ id: z.string().uuid(), credential_id: z.string().uuid() }),
      responses: { 200: { description: "Revoked", schema: CredentialView }, 404: { description: "Unknown credential" } },
      handle: async ({ params, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: credentialView(await credentials.revokeCredential(params.id, params.credential_id, actor, scope)) };
      },
    }),
    route({
      method: "post",
      path: "/v1/api-keys",
      summary: "Create an API key for automation; the secret is shown once and stored hashed",
      tags: ["identity"],
      access: { roles: [] },
      body: z
        .object({
          name: z.string().min(1).max(200),
          role: z.enum(ROLES as [string, ...string[]]),
          organization: Slug.optional().openapi({ description: "Confine the key to this organisation; required for a caller that is itself confined" }),
          expires_at: z.string().datetime({ offset: true }).optional(),
        })
        .strict(),
      responses: { 201: { description: "Created", schema: ApiKeyView.extend({ secret: z.string() }) } },
      handle: async ({ body, principal }) => {
        const { actor, scope } = who(principal);
        const organization = body.organization ?? (scope.orgId ? slugOf(scope.orgId) : null);
        const { key, secret } = await apiKeys.createApiKey(
          { name: body.name, role: body.role as ApiKey["role"], organization, expiresAt: body.expires_at ? new Date(body.expires_at) : null },
          actor,
          scope,
        );
        return { status: 201, headers: { "Cache-Control": "no-store" }, body: { ...apiKeyView(key), secret } };
      },
    }),
    route({
      method: "get",
      path: "/v1/api-keys",
      summary: "List API keys (never their secrets)",
      tags: ["identity"],
      access: { roles: [] },
      responses: { 200: { description: "Keys", schema: z.object({ api_keys: z.array(ApiKeyView) }) } },
      handle: ({ principal }) => ({ status: 200, body: { api_keys: directory.listApiKeys(scopeOf(principal)).map(apiKeyView) } }),
    }),
    route({
      method: "delete",
      path: "/v1/api-keys/{id}",
      summary: "Revoke an API key",
      tags: ["identity"],
      access: { roles: [] },
      params: Id,
      responses: { 200: { description: "Revoked", schema: ApiKeyView }, 404: { description: "Unknown key" } },
      handle: async ({ params, principal }) => {
        const { actor, scope } = who(principal);
        return { status: 200, body: apiKeyView(await apiKeys.revokeApiKey(params.id, actor, scope)) };
      },
    }),
  ];
}
