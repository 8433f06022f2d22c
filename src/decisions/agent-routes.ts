import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { NotFoundError } from "../lib/errors";
import type { IdentityService } from "../identity/identity-service";
import { PermissionsView } from "../identity/inventory-routes";
import type { PolicyEngine } from "../policy/policy-engine";
import { effectivePermissions } from "./permissions";

const OwnPermissionsView = PermissionsView.extend({ skills: z.array(z.object({ name: z.string(), version: z.string() })) }).openapi("OwnPermissions");

/**
 * Routes an agent calls with its own token about itself. The agent is the token's, never a path
 * or query parameter, so an agent can learn nothing about another agent or organisation.
 */
export function agentRoutes(identity: IdentityService, engine: PolicyEngine): RouteSpec[] {
  return [
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
