import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { SkillRef } from "../shared/vocabulary";
import type { DecisionService } from "./decision-service";
import { parseIdempotencyKey } from "./idempotency";
import { Tracing } from "../ops/tracing";

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
    approval_id: z
      .string()
      .uuid()
      .optional()
      .openapi({ description: "An approval a human gave for exactly this request (from an earlier approval_required answer). The allow spends it: it is usable once." }),
  })
  .strict()
  .openapi("DecisionRequest", {
    description: "What the agent wants to do. Who the agent is comes from its token and CLAIIM's records, never from this body.",
  });

const PolicyRefView = z.object({ version: z.number().int().nullable(), revision: z.string().nullable(), digest: z.string().nullable() });

const HumanRef = z.object({ id: z.string(), name: z.string(), email: z.string() });

export const DecisionApprovalView = z
  .object({
    id: z.string().uuid(),
    status: z.enum(["pending", "approved", "rejected", "expired", "used"]),
    expires_at: z.string(),
    url: z.string().openapi({ description: "Poll here (GET, agent token) for the human's answer; ?wait=30 waits for it" }),
    approvers: z
      .object({ accountable_human: HumanRef.nullable(), roles: z.array(z.string()), humans: z.array(z.string()) })
      .optional()
      .openapi({ description: "Who may approve (approval_required only)" }),
    approved_by: z
      .object({ type: z.string(), id: z.string(), name: z.string(), human: HumanRef.nullable() })
      .optional()
      .openapi({ description: "Who approved (an allow that spent the approval)" }),
  })
  .openapi("DecisionApproval");

export const DecisionResponseSchema = z
  .object({
    decision_id: z.string(),
    decision: z.enum(["allow", "deny", "approval_required"]).openapi({
      description: "approval_required: not allowed yet; a human must approve this exact request, then ask again with approval_id",
    }),
    allow: z.boolean(),
    reasons: z.array(z.string()),
    reason_codes: z.array(z.string()).openapi({ description: "reason_codes[i] is the stable code of reasons[i]; see docs/api.md for the list. Treat an unknown code as a plain deny." }),
    approval: DecisionApprovalView.optional(),
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
        200: {
          description: "Decided and recorded in Chron (allow, deny, or approval_required), or the answer first given under this Idempotency-Key",
          schema: DecisionResponseSchema,
        },
        409: { description: "idempotency_key_reused: the Idempotency-Key was sent before with a different request" },
        503: { description: "Chron could not record the decision, so none was made" },
      },
      handle: async ({ body, principal, headers, locals }) => {
        // Node joins a repeated header of this kind into one string with ", ", never an array.
        const key = parseIdempotencyKey(headers["idempotency-key"] as string | undefined);
        // With tracing on, the record carries the request's trace (as OPA's decision logs do).
        const trace = Tracing.ref(locals.span);
        const { response, replayed } = key === null ? { response: await decisions.decide(principal, body, undefined, trace), replayed: false } : await decisions.decideOnce(principal, body, key, trace);
        locals.traceAttributes = { "claiim.decision_id": response.decision_id, "claiim.decision": response.decision, "claiim.chron.seq": response.chron.seq };
        return { status: 200, body: response, headers: replayed ? { "Idempotent-Replayed": "true" } : undefined };
      },
    }),
  ];
}
