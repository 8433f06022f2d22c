// How approvals are shown: in Chron events, in the API, and in the webhook's payload.
import { newEvent, type ApproverRef, type EventContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import type { Human, Organization } from "../identity/model";
import type { Approval } from "./model";
import type { Actor } from "../shared/principal";

/** What the approvals feature reads of identities; all of it from memory. */
export interface Directory {
  agentContext(agentId: string): AgentContext | null;
  human(id: string): Human | undefined;
  /** The human registered in the organisation with this (lower-case) email. */
  humanByEmail(orgId: string, email: string): Human | undefined;
  organization(id: string): Organization | undefined;
}

const humanRef = (h: Human | undefined | null) => (h ? { id: h.id, name: h.name, email: h.email } : null);

export function approversView(a: Approval, directory: Directory) {
  const owner = a.approvers.accountable_human && a.ownerId ? directory.human(a.ownerId) : undefined;
  return { accountable_human: humanRef(owner), roles: [...a.approvers.roles], humans: [...a.approvers.humans] };
}

export function approverView(ref: ApproverRef | null) {
  return ref ? { type: ref.actor.type, id: ref.actor.id, name: ref.actor.name, human: ref.human } : null;
}

export function approvalUrls(a: Approval, publicUrl: string) {
  const url = `${publicUrl}/v1/approvals/${a.id}`;
  return { url, approve_url: `${url}/approve`, reject_url: `${url}/reject` };
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function webhookView(a: Approval) {
  const w = a.webhook;
  return {
    state: w.state,
    attempts: w.attempts,
    last_attempt_at: iso(w.lastAttemptAt),
    next_attempt_at: iso(w.nextAttemptAt),
    last_error: w.lastError,
    delivered_at: iso(w.deliveredAt),
  };
}

/** An approval as the API shows it. The request is shown in full: the approver must read what they approve. */
export function approvalView(a: Approval, directory: Directory, publicUrl: string) {
  const ctx = directory.agentContext(a.agentId);
  return {
    id: a.id,
    status: a.status,
    organization: directory.organization(a.orgId)?.slug ?? a.orgId,
    agent: { id: a.agentId, name: ctx?.agent.name ?? a.agentId },
    accountable_human: humanRef(a.ownerId ? directory.human(a.ownerId) : null),
    request: a.request,
    reasons: a.reasons,
    approvers: approversView(a, directory),
    decision_id: a.decisionId,
    policy_version: a.policyVersion,
    created_at: a.createdAt.toISOString(),
    expires_at: a.expiresAt.toISOString(),
    decided_at: iso(a.decidedAt),
    decided_by: approverView(a.decidedBy),
    decision_reason: a.decisionReason,
    used_at: iso(a.usedAt),
    used_by_decision_id: a.usedByDecisionId,
    webhook: webhookView(a),
    ...approvalUrls(a, publicUrl),
  };
}

export type ApprovalView = ReturnType<typeof approvalView>;

/**
 * A Chron event about an approval. It carries the agent and its accountable human (so that ?agent=
 * and ?owner= find it beside the decisions) and names the decision that asked for the approval;
 * the request itself is in that decision's record, where redaction rules apply to it.
 */
export function approvalEvent(directory: Directory, a: Approval, type: string, actor: Actor, before: unknown, after: Record<string, unknown>, reason: string | null = null): EventContent {
  const org = directory.organization(a.orgId);
  const ctx = directory.agentContext(a.agentId);
  const owner = a.ownerId ? directory.human(a.ownerId) : undefined;
  return newEvent({
    type,
    actor,
    subject: { type: "approval", id: a.id, name: a.request.action },
    organization: org ? { id: org.id, slug: org.slug } : { id: a.orgId, slug: a.orgId },
    agent: ctx ? { id: ctx.agent.id, name: ctx.agent.name, status: ctx.agent.status } : { id: a.agentId, name: a.agentId, status: "unknown" },
    accountable_human: owner ? { id: owner.id, name: owner.name, email: owner.email, status: owner.status } : null,
    reason,
    before,
    after: { decision_id: a.decisionId, ...after },
  });
}

/** The body of the approval.requested webhook (Standard Webhooks: type, timestamp, data). */
export function webhookPayload(a: Approval, directory: Directory, publicUrl: string) {
  const org = directory.organization(a.orgId);
  const ctx = directory.agentContext(a.agentId);
  return {
    type: "approval.requested",
    timestamp: a.createdAt.toISOString(),
    data: {
      approval: { id: a.id, status: a.status, created_at: a.createdAt.toISOString(), expires_at: a.expiresAt.toISOString(), approvers: approversView(a, directory), ...approvalUrls(a, publicUrl) },
      decision_id: a.decisionId,
      reasons: a.reasons,
      organization: { id: a.orgId, slug: org?.slug ?? null },
      agent: { id: a.agentId, name: ctx?.agent.name ?? null, description: ctx?.agent.description ?? null },
      accountable_human: humanRef(a.ownerId ? directory.human(a.ownerId) : null),
      request: a.request,
    },
  };
}
