import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import type { IdentityService } from "./identity-service";
import type { Agent, AgentCredential, Human, Organization } from "./model";

// semver.org's regular expression for a semantic version.
export const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

export const Slug = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,62})$/, "lowercase letters, digits and dashes, at most 63");
export const Name = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "lowercase letters, digits, '.', '_' and '-', at most 64");
export const SkillRef = z
  .object({ name: Name, version: z.string().regex(SEMVER, "a semantic version such as 1.2.0") })
  .strict()
  .openapi("SkillRef");
const Id = z.object({ id: z.string().uuid() });

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
const IssuedCredential = z
  .object({ credential_id: z.string(), token: z.string(), token_type: z.literal("Bearer"), kid: z.string(), expires_at: z.string() })
  .openapi("IssuedAgentCredential");

export function identityRoutes(identity: IdentityService): RouteSpec[] {
  const orgView = (o: Organization) => ({ id: o.id, slug: o.slug, name: o.name, created_at: o.createdAt.toISOString() });
  const humanView = (h: Human) => ({
    id: h.id,
    organization: identity.organization(h.orgId)?.slug ?? h.orgId,
    name: h.name,
    email: h.email,
    status: h.status,
    created_at: h.createdAt.toISOString(),
  });
  const agentView = (a: Agent) => {
    const owner = identity.agentContext(a.id)?.owner;
    return {
      id: a.id,
      organization: identity.organization(a.orgId)?.slug ?? a.orgId,
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
  const orgIdOf = (slug?: string) => (slug ? identity.organizationBySlug(slug).id : undefined);

  return [
    route({
      method: "get",
      path: "/.well-known/jwks.json",
      summary: "Public keys that verify the tokens CLAIIM signs",
      tags: ["identity"],
      access: { public: true },
      responses: { 200: { description: "JSON Web Key Set", schema: z.object({ keys: z.array(z.record(z.string(), z.string())) }) } },
      handle: () => ({ status: 200, body: identity.jwks(), headers: { "Cache-Control": "public, max-age=300" } }),
    }),
    route({
      method: "post",
      path: "/v1/organizations",
      summary: "Create an organisation",
      tags: ["identity"],
      access: { roles: [] },
      body: z.object({ slug: Slug, name: z.string().min(1).max(200) }).strict(),
      responses: { 201: { description: "Created", schema: OrganizationView }, 409: { description: "Slug taken" } },
      handle: async ({ body }) => ({ status: 201, body: orgView(await identity.createOrganization(body)) }),
    }),
    route({
      method: "get",
      path: "/v1/organizations",
      summary: "List organisations",
      tags: ["identity"],
      access: { roles: ["auditor", "agent_manager"] },
      responses: { 200: { description: "Organisations", schema: z.object({ organizations: z.array(OrganizationView) }) } },
      handle: () => ({ status: 200, body: { organizations: identity.listOrganizations().map(orgView) } }),
    }),
    route({
      method: "post",
      path: "/v1/humans",
      summary: "Register a human who can be accountable for agents",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      body: z.object({ organization: Slug, name: z.string().min(1).max(200), email: z.string().email().max(320) }).strict(),
      responses: { 201: { description: "Registered", schema: HumanView }, 404: { description: "Unknown organisation" }, 409: { description: "Email taken" } },
      handle: async ({ body }) => ({ status: 201, body: humanView(await identity.createHuman(body)) }),
    }),
    route({
      method: "get",
      path: "/v1/humans",
      summary: "List humans",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      query: z.object({ organization: Slug.optional() }).strict(),
      responses: { 200: { description: "Humans", schema: z.object({ humans: z.array(HumanView) }) } },
      handle: ({ query }) => ({ status: 200, body: { humans: identity.listHumans(orgIdOf(query.organization)).map(humanView) } }),
    }),
    route({
      method: "get",
      path: "/v1/humans/{id}",
      summary: "Get a human",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: Id,
      responses: { 200: { description: "The human", schema: HumanView }, 404: { description: "Unknown human" } },
      handle: ({ params }) => ({ status: 200, body: humanView(identity.human(params.id)) }),
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
      handle: async ({ body }) => ({ status: 201, body: agentView(await identity.registerAgent(body)) }),
    }),
    route({
      method: "get",
      path: "/v1/agents",
      summary: "List agents",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      query: z.object({ organization: Slug.optional(), owner: z.string().uuid().optional(), status: z.enum(["active", "suspended", "retired"]).optional() }).strict(),
      responses: { 200: { description: "Agents", schema: z.object({ agents: z.array(AgentView) }) } },
      handle: ({ query }) => ({
        status: 200,
        body: { agents: identity.listAgents({ orgId: orgIdOf(query.organization), ownerId: query.owner, status: query.status }).map(agentView) },
      }),
    }),
    route({
      method: "get",
      path: "/v1/agents/{id}",
      summary: "Get an agent",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: Id,
      responses: { 200: { description: "The agent", schema: AgentView }, 404: { description: "Unknown agent" } },
      handle: ({ params }) => ({ status: 200, body: agentView(identity.agent(params.id)) }),
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/suspend",
      summary: "Suspend an agent: its next decision is a deny",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z.object({ reason: z.string().min(1).max(1000) }).strict(),
      responses: { 200: { description: "Suspended", schema: AgentView }, 404: { description: "Unknown agent" } },
      handle: async ({ params, body }) => ({ status: 200, body: agentView(await identity.setAgentStatus(params.id, "suspended", body.reason)) }),
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/reactivate",
      summary: "Reactivate a suspended agent",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z.object({ reason: z.string().min(1).max(1000) }).strict(),
      responses: { 200: { description: "Active again", schema: AgentView }, 404: { description: "Unknown agent" } },
      handle: async ({ params, body }) => ({ status: 200, body: agentView(await identity.setAgentStatus(params.id, "active", body.reason)) }),
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/credentials",
      summary: "Issue a credential (a signed ES256 JWT) for an agent; the token is shown once",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: Id,
      body: z.object({ ttl_seconds: z.number().int().min(60).max(366 * 24 * 3600).optional() }).strict(),
      responses: { 201: { description: "Issued", schema: IssuedCredential }, 404: { description: "Unknown agent" } },
      handle: async ({ params, body }) => {
        const { credential, token } = await identity.issueCredential(params.id, body.ttl_seconds);
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
      handle: ({ params }) => ({ status: 200, body: { credentials: identity.listCredentials(params.id).map(credentialView) } }),
    }),
    route({
      method: "delete",
      path: "/v1/agents/{id}/credentials/{credential_id}",
      summary: "Revoke a credential: its token stops working at the next request",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: z.object({ id: z.string().uuid(), credential_id: z.string().uuid() }),
      responses: { 200: { description: "Revoked", schema: CredentialView }, 404: { description: "Unknown credential" } },
      handle: async ({ params }) => ({ status: 200, body: credentialView(await identity.revokeCredential(params.id, params.credential_id)) }),
    }),
  ];
}
