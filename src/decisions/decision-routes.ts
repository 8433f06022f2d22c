import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { SkillRef } from "../identity/identity-routes";
import type { DecisionService } from "./decision-service";
import { parseIdempotencyKey } from "./idempotency";

export const DecisionRequestSchema = z
  .object({
    action: z.string().min(1).max(200),
    resource: z.string().min(1).max(1000),
    purpose: z.string().min(1).max(2000),
    skill: SkillRef,
    on_behalf_of: z
      .object({ subject: z.string().min(1).max(320) })
      .strict()
      .optional()
      .openapi({ description: "The user the agent acts for, when its token does not say (RFC 8693 act semantics)" }),
  })
  .strict()
  .openapi("DecisionRequest", {
    description: "What the agent wants to do. Who the agent is comes from its token and CLAIIM's records, never from this body.",
  });

const PolicyRefView = z.object({ version: z.number().int().nullable(), revision: z.string().nullable(), digest: z.string().nullable() });

export const DecisionResponseSchema = z
  .object({
    decision_id: z.string(),
    decision: z.enum(["allow", "deny"]),
    allow: z.boolean(),
    reasons: z.array(z.string()),
    policy: PolicyRefView,
    timestamp: z.string(),
    chron: z.object({ seq: z.number().int(), hash: z.string() }),
  })
  .openapi("DecisionResponse");

export function decisionRoutes(decisions: DecisionService): RouteSpec[] {
  return [
    route({
      method: "post",
      path: "/v1/decisions",
      summary:
        "Ask whether this agent may take an action on a resource, for a purpose. With an Idempotency-Key header, a retry of the same request gets the first answer (and Idempotent-Replayed: true) instead of a second decision",
      tags: ["decisions"],
      access: { agent: true },
      hotPath: true,
      body: DecisionRequestSchema,
      responses: {
        200: { description: "Decided and recorded in Chron (allow or deny), or the answer first given under this Idempotency-Key", schema: DecisionResponseSchema },
        409: { description: "idempotency_key_reused: the Idempotency-Key was sent before with a different request" },
        503: { description: "Chron could not record the decision, so none was made" },
      },
      handle: async ({ body, principal, req }) => {
        if (principal?.kind !== "agent") throw new Error("unreachable: route is agent-only");
        const key = parseIdempotencyKey(req.get("idempotency-key"));
        if (key === null) return { status: 200, body: await decisions.decide(principal, body) };
        const { response, replayed } = await decisions.decideOnce(principal, body, key);
        return { status: 200, body: response, headers: replayed ? { "Idempotent-Replayed": "true" } : undefined };
      },
    }),
  ];
}
