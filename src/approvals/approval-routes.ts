import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import type { IdentityDirectory } from "../identity/directory";
import { Email } from "../shared/vocabulary";
import type { ApprovalService } from "./approval-service";
import { APPROVAL_STATUSES, type Approval, type ApprovalStatus } from "./model";
import { approvalView, type Directory } from "./views";
import { scopeOf } from "../shared/principal";

const HumanRef = z.object({ id: z.string(), name: z.string(), email: z.string() });
const Status = z.enum(APPROVAL_STATUSES as [ApprovalStatus, ...ApprovalStatus[]]);

export const ApprovalViewSchema = z
  .object({
    id: z.string().uuid(),
    status: Status,
    organization: z.string(),
    agent: z.object({ id: z.string(), name: z.string() }),
    accountable_human: HumanRef.nullable(),
    request: z
      .object({
        action: z.string(),
        resource: z.string(),
        purpose: z.string(),
        skill: z.object({ name: z.string(), version: z.string() }),
        on_behalf_of: z.object({ subject: z.string() }).nullable(),
      })
      .openapi({ description: "The exact request approved: a use must repeat it field for field" }),
    reasons: z.array(z.string()).openapi({ description: "Why the policy asked for an approval" }),
    approvers: z.object({ accountable_human: HumanRef.nullable(), roles: z.array(z.string()), humans: z.array(z.string()) }),
    decision_id: z.string().openapi({ description: "The approval_required decision that asked for it" }),
    policy_version: z.number().int().nullable(),
    created_at: z.string(),
    expires_at: z.string(),
    decided_at: z.string().nullable(),
    decided_by: z.object({ type: z.string(), id: z.string(), name: z.string(), human: HumanRef.nullable() }).nullable(),
    decision_reason: z.string().nullable(),
    used_at: z.string().nullable(),
    used_by_decision_id: z.string().nullable(),
    webhook: z
      .object({
        state: z.enum(["none", "pending", "delivered", "failed"]),
        attempts: z.number().int(),
        last_attempt_at: z.string().nullable(),
        next_attempt_at: z.string().nullable(),
        last_error: z.string().nullable(),
        delivered_at: z.string().nullable(),
      })
      .openapi({ description: "Delivery of the approval.requested webhook (none when CLAIIM_APPROVAL_WEBHOOK_URL is not set)" }),
    url: z.string(),
    approve_url: z.string(),
    reject_url: z.string(),
  })
  .openapi("Approval");

const IdParams = z.object({ id: z.string().uuid() }).strict();

const Answer = z
  .object({
    reason: z.string().min(1).max(1000),
    // The same e-mail rule as the humans it names (a pattern the OpenAPI document states, unlike format: email).
    on_behalf_of: Email.optional()
      .openapi({ description: "Approver keys only: the email of the human whose answer this key relays (a chat or e-mail bridge); that human must be an approver of the request" }),
  })
  .strict();

export function approvalRoutes(approvals: ApprovalService, identity: IdentityDirectory, directory: Directory, publicUrl: string): RouteSpec[] {
  const view = (a: Approval) => approvalView(a, directory, publicUrl);
  const answer = (verdict: "approve" | "reject") =>
    route({
      method: "post",
      path: `/v1/approvals/{id}/${verdict}`,
      summary:
        verdict === "approve"
          ? "Approve one exact request of an agent: the agent may then make it once, before the approval expires"
          : "Reject a request of an agent that waits for a human's approval",
      tags: ["approvals"],
      access: { roles: ["approver"], humans: true },
      params: IdParams,
      body: Answer,
      responses: {
        200: { description: verdict === "approve" ? "Approved, and recorded in Chron" : "Rejected, and recorded in Chron", schema: ApprovalViewSchema },
        403: { description: "Not an approver of this request (approver_not_allowed), the request was made for the caller (approval_self), or a relay the caller may not make (relay_not_allowed)" },
        404: { description: "No such approval in the caller's organisation" },
        409: { description: "Already decided, used or expired (approval_closed, approval_expired), or changing right now (approval_busy)" },
        503: { description: "Chron could not record the answer, so it was not taken" },
      },
      handle: async ({ params, body, principal }) => {
        const done = verdict === "approve" ? approvals.approve(params.id, principal, body.reason, body.on_behalf_of) : approvals.reject(params.id, principal, body.reason, body.on_behalf_of);
        return { status: 200, body: view(await done) };
      },
    });
  return [
    route({
      method: "get",
      path: "/v1/approvals",
      summary: "Approvals that are open, or closed within the last day, newest first",
      tags: ["approvals"],
      access: { roles: ["approver", "auditor", "agent_manager"], humans: true, agents: true },
      query: z
        .object({
          status: Status.optional(),
          organization: z.string().optional(),
          agent: z.string().uuid().optional(),
          approver: z
            .union([z.literal("me"), Email])
            .optional()
            .openapi({ description: "An email: approvals that name this human as approver; me: those the caller may answer" }),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        })
        .strict(),
      responses: { 200: { description: "Approvals the caller may read", schema: z.object({ approvals: z.array(ApprovalViewSchema) }) } },
      handle: ({ query, principal }) => {
        const orgId = identity.organizationFilter(scopeOf(principal), query.organization);
        const list = approvals.list({ status: query.status, orgId, agentId: query.agent, approver: query.approver, limit: query.limit }, principal);
        return { status: 200, body: { approvals: list.map(view) } };
      },
    }),
    route({
      method: "get",
      path: "/v1/approvals/{id}",
      summary: "One approval; ?wait=N (at most 60 s) waits until it is no longer pending, for the agent that polls",
      tags: ["approvals"],
      access: { roles: ["approver", "auditor", "agent_manager"], humans: true, agents: true },
      params: IdParams,
      query: z
        .object({
          wait: z.coerce
            .number()
            .int()
            .min(0)
            .max(60)
            .default(0)
            .openapi({ description: "Seconds to wait for approval, rejection or expiry before answering; the answer comes as soon as one happens" }),
        })
        .strict(),
      responses: { 200: { description: "The approval", schema: ApprovalViewSchema }, 404: { description: "No such approval for this caller" } },
      handle: async ({ params, query, principal, hangUp }) => {
        // A caller that hangs up stops the wait.
        return { status: 200, body: view(await approvals.wait(params.id, principal, query.wait, hangUp())) };
      },
    }),
    answer("approve"),
    answer("reject"),
  ];
}
