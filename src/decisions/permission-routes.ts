import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { NotFoundError } from "../lib/errors";
import type { IdentityDirectory } from "../identity/directory";
import type { PolicyEngine } from "../policy/policy-engine";
import { effectivePermissions } from "../policy/permissions";
import { scopeOf } from "../shared/principal";

const PermissionsView = z
  .object({
    agent: z.object({ id: z.string(), name: z.string(), status: z.string() }),
    policy: z.object({ version: z.number().int(), revision: z.string() }).nullable(),
    purpose: z.string(),
    matrix: z.array(
      z.object({
        skill: z.string(),
        version: z.string(),
        action: z.string(),
        resource: z.string(),
        allow: z.boolean(),
        decision: z.enum(["allow", "deny", "approval_required"]),
        reasons: z.array(z.string()),
        reason_codes: z.array(z.string()),
      }),
    ),
  })
  .openapi("EffectivePermissions");

const OwnPermissionsView = PermissionsView.extend({ skills: z.array(z.object({ name: z.string(), version: z.string() })) }).openapi("OwnPermissions");

/**
 * What an agent may do, computed from the active policy: for agent managers and auditors about
 * any agent they may see, and for an agent about itself. On the agent's route the agent is the
 * token's, never a path or query parameter, so an agent can learn nothing about another agent or
 * organisation.
 */
export function permissionRoutes(identity: IdentityDirectory, engine: PolicyEngine): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/v1/agents/{id}/permissions",
      summary: "What this agent may do: the active policy evaluated over every action and resource its data declares for the agent's skills",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: z.object({ id: z.string().uuid() }),
      responses: { 200: { description: "Allow/deny matrix with reasons; nothing is recorded", schema: PermissionsView } },
      handle: async ({ params, principal }) => {
        identity.agent(params.id, scopeOf(principal));
        return { status: 200, body: await effectivePermissions(identity.agentContext(params.id)!, engine.active()) };
      },
    }),
    route({
      method: "get",
      path: "/v1/agent/permissions",
      summary:
        "What the calling agent may do now: its registered skills and the active policy evaluated over every action and resource pattern the policy declares for them (as GET /v1/agents/{id}/permissions); nothing is recorded",
      tags: ["decisions"],
      access: { agent: true },
      responses: { 200: { description: "The agent's own skills and allow/deny matrix", schema: OwnPermissionsView } },
      handle: async ({ principal }) => {
        const ctx = identity.agentContext(principal.agentId);
        if (!ctx) throw new NotFoundError("agent_not_found", "the token's agent no longer exists");
        const report = await effectivePermissions(ctx, engine.active());
        return { status: 200, body: { ...report, skills: ctx.agent.skills.map((s) => ({ name: s.name, version: s.version })) } };
      },
    }),
  ];
}
