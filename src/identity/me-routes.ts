import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import type { IdentityDirectory } from "./directory";
import { actorOf, rolesOf } from "../shared/principal";

const MeView = z
  .object({
    kind: z.enum(["api_key", "human"]),
    id: z.string().openapi({ description: "The key's id, or issuer#subject for a human" }),
    name: z.string(),
    roles: z.array(z.string()),
    organization: z.string().nullable().openapi({ description: "The organisation the credential is confined to (slug), null for all" }),
  })
  .openapi("Me");

/**
 * Who the caller is, as CLAIIM sees them: what a client (the console) needs to show only what the
 * API will let this credential do. It grants nothing; every route still checks for itself.
 */
export function meRoutes(identity: IdentityDirectory): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/v1/me",
      summary: "The calling credential: its kind, name, roles and organisation",
      tags: ["identity"],
      // WARNING: every role that signs in to the console must be listed here (admin always may).
      // Any signed-in human too: one needs no role to answer an approval that names them.
      access: { roles: ["policy_author", "agent_manager", "auditor", "approver"], humans: true },
      responses: { 200: { description: "The caller", schema: MeView } },
      handle: ({ principal: p }) => {
        return {
          status: 200,
          body: {
            kind: p.kind,
            id: actorOf(p).id,
            name: p.name,
            roles: rolesOf(p),
            // WARNING: never null for a confined credential: null means "every organisation".
            organization: p.orgId ? (identity.organization(p.orgId)?.slug ?? p.orgId) : null,
          },
        };
      },
    }),
  ];
}
