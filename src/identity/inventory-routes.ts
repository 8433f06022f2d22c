import { stringify } from "csv-stringify/sync";
import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import type { IdentityDirectory } from "./directory";
import { Name, Slug } from "../shared/vocabulary";
import { scopeOf } from "../shared/principal";

const InventoryRow = z
  .object({
    agent_id: z.string(),
    agent_name: z.string(),
    organization: z.string(),
    status: z.string(),
    status_reason: z.string().nullable(),
    owner_id: z.string().nullable(),
    owner_name: z.string().nullable(),
    owner_email: z.string().nullable(),
    owner_status: z.string().nullable(),
    skills: z.string().openapi({ description: "name@version, separated by spaces" }),
    active_credentials: z.number().int(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("InventoryRow");


export function inventoryRoutes(identity: IdentityDirectory): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/v1/inventory/agents",
      summary: "Which agents exist, who is accountable for each, and what they carry (JSON or CSV)",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      query: z
        .object({
          organization: Slug.optional(),
          owner: z.string().uuid().optional(),
          status: z.enum(["active", "suspended", "retired"]).optional(),
          skill: Name.optional(),
          format: z.enum(["json", "csv"]).default("json"),
        })
        .strict(),
      responses: {
        200: { description: "The inventory (JSON, or CSV with format=csv)", schema: z.object({ generated_at: z.string(), count: z.number().int(), agents: z.array(InventoryRow) }), alsoAs: ["text/csv"] },
      },
      handle: ({ query, principal }) => {
        const scope = scopeOf(principal);
        const orgId = query.organization ? identity.organizationBySlug(query.organization, scope).id : undefined;
        const now = Date.now();
        const rows = identity.listAgents(scope, { orgId, ownerId: query.owner, status: query.status, skill: query.skill }).map((a) => {
          const owner = identity.agentContext(a.id)?.owner ?? null;
          return {
            agent_id: a.id,
            agent_name: a.name,
            organization: identity.organization(a.orgId)?.slug ?? a.orgId,
            status: a.status,
            status_reason: a.statusReason,
            owner_id: owner?.id ?? null,
            owner_name: owner?.name ?? null,
            owner_email: owner?.email ?? null,
            owner_status: owner?.status ?? null,
            skills: a.skills.map((s) => `${s.name}@${s.version}`).join(" "),
            active_credentials: identity.listCredentials(a.id, scope).filter((c) => !c.revokedAt && c.expiresAt.getTime() > now).length,
            created_at: a.createdAt.toISOString(),
            updated_at: a.updatedAt.toISOString(),
          };
        });
        if (query.format === "csv") {
          const columns = Object.keys(InventoryRow.shape);
          return {
            status: 200,
            contentType: "text/csv; charset=utf-8",
            headers: { "Content-Disposition": 'attachment; filename="claiim-agents.csv"' },
            body: stringify(rows, { header: true, columns }),
          };
        }
        return { status: 200, body: { generated_at: new Date(now).toISOString(), count: rows.length, agents: rows } };
      },
    }),
  ];
}
