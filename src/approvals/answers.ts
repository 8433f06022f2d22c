// What an agent's decision says about an approval: the request it binds, why it cannot be used,
// and how the decision record and the answer name it. Pure functions.
import type { ApproverRef, DecisionApproval, DecisionContent } from "../chron/record";
import { randomUUID } from "node:crypto";
import type { AgentContext } from "../identity/identity-service";
import type { ApprovalSpec } from "../policy/approval-spec";
import type { ApprovalReply } from "./gate";
import { mismatches, type Approval, type BoundRequest } from "./model";
import { approvalUrls, approverView, approversView, type Directory } from "./views";

/** The part of a decision an approval is given for. */
export function boundRequest(c: DecisionContent): BoundRequest {
  return { action: c.action, resource: c.resource, purpose: c.purpose, skill: { name: c.skill.name, version: c.skill.version }, on_behalf_of: c.on_behalf_of };
}

/** Why this approval cannot allow this request now; null when it can. */
export function refusal(a: Approval, claim: string | undefined, now: number, req: BoundRequest): { code: string; reason: string } | null {
  if (a.status === "used" || claim === "spend") return { code: "approval_used", reason: `approval ${a.id} was already used; an approval allows one request once` };
  if (a.status === "rejected") return { code: "approval_rejected", reason: `approval ${a.id} was rejected by ${approverName(a.decidedBy)}: ${a.decisionReason}` };
  if (a.status === "expired" || claim === "expire" || a.expiresAt.getTime() <= now) return { code: "approval_expired", reason: `approval ${a.id} expired at ${a.expiresAt.toISOString()}` };
  if (a.status === "pending" || claim === "decide") return { code: "approval_pending", reason: `approval ${a.id} has not been approved yet; poll it, then ask again` };
  const diff = mismatches(a.request, req);
  if (diff.length) return { code: "approval_mismatch", reason: `approval ${a.id} was given for another request: ${diff.join(", ")} differ` };
  return null;
}

/** The approval as a decision record names it. */
export function recordedRef(a: Approval): DecisionApproval {
  const ref: DecisionApproval = { id: a.id, status: a.status, expires_at: a.expiresAt.toISOString(), requested_decision_id: a.decisionId };
  if (a.status === "pending") ref.approvers = a.approvers;
  if (a.decidedBy && a.status !== "rejected") ref.approved_by = a.decidedBy;
  if (a.decidedAt && a.status !== "rejected") ref.approved_at = a.decidedAt.toISOString();
  return ref;
}

/** The approval as the agent's answer shows it. */
export function reply(a: Approval, directory: Directory, publicUrl: string): ApprovalReply {
  const view: ApprovalReply = { id: a.id, status: a.status, expires_at: a.expiresAt.toISOString(), url: approvalUrls(a, publicUrl).url };
  if (a.status === "pending" || a.status === "approved") view.approvers = approversView(a, directory);
  if (a.decidedBy && a.status !== "rejected") view.approved_by = approverView(a.decidedBy)!;
  return view;
}

export function approverName(ref: ApproverRef | null): string {
  if (!ref) return "nobody";
  return ref.human ? (ref.actor.type === "human" ? ref.human.email : `${ref.human.email} (through ${ref.actor.name})`) : `${ref.actor.type} ${ref.actor.name}`;
}

/** A new pending approval of this exact request, asked by the agent's decision, open for `ttlSeconds`. */
export function newApproval(content: DecisionContent, spec: ApprovalSpec, ctx: AgentContext, ttlSeconds: number, webhook: boolean): Approval {
  const now = Date.parse(content.timestamp);
  return {
    id: randomUUID(),
    orgId: ctx.organization.id,
    agentId: ctx.agent.id,
    ownerId: ctx.owner?.id ?? null,
    credentialId: content.requested_by.credential_id,
    decisionId: content.decision_id,
    request: boundRequest(content),
    reasons: content.reasons,
    approvers: { accountable_human: spec.approvers.accountable_human, roles: spec.approvers.roles, humans: spec.approvers.humans },
    status: "pending",
    policyVersion: content.policy.version,
    createdAt: new Date(now),
    expiresAt: new Date(now + ttlSeconds * 1000),
    decidedAt: null,
    decidedBy: null,
    decisionReason: null,
    usedAt: null,
    usedByDecisionId: null,
    webhook: { state: webhook ? "pending" : "none", attempts: 0, lastAttemptAt: null, nextAttemptAt: null, lastError: null, deliveredAt: null },
  };
}
