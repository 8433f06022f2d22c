// Approval domain types. Stores speak these, never Prisma or wire types.
import type { ApproverRef } from "../chron/record";
import type { Approvers } from "../policy/approval-spec";

/**
 * pending → approved | rejected | expired; approved → used | expired. Used, rejected and expired
 * are final.
 */
export type ApprovalStatus = "pending" | "approved" | "rejected" | "expired" | "used";
export const APPROVAL_STATUSES: readonly ApprovalStatus[] = ["pending", "approved", "rejected", "expired", "used"];
export const OPEN_STATUSES: readonly ApprovalStatus[] = ["pending", "approved"];

/** What an approval is bound to: exactly this request, by this agent, for this user. */
export interface BoundRequest {
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
  on_behalf_of: { subject: string } | null;
}

export type WebhookState = "none" | "pending" | "delivered" | "failed";

/** Where the notification of a new approval stands (CLAIIM_APPROVAL_WEBHOOK_URL). */
export interface WebhookDelivery {
  state: WebhookState;
  attempts: number;
  lastAttemptAt: Date | null;
  nextAttemptAt: Date | null;
  lastError: string | null;
  deliveredAt: Date | null;
}

export interface Approval {
  id: string;
  orgId: string;
  agentId: string;
  /** The accountable human when the approval was asked for. */
  ownerId: string | null;
  /** The credential (or OAuth client) whose token asked. */
  credentialId: string;
  /** The approval_required decision that asked for it. */
  decisionId: string;
  request: BoundRequest;
  /** Why the policy asked for it. */
  reasons: string[];
  approvers: Approvers;
  status: ApprovalStatus;
  policyVersion: number | null;
  createdAt: Date;
  expiresAt: Date;
  decidedAt: Date | null;
  decidedBy: ApproverRef | null;
  decisionReason: string | null;
  usedAt: Date | null;
  /** The allow that spent it. */
  usedByDecisionId: string | null;
  webhook: WebhookDelivery;
}

/** The fields of the request an approval is bound to that differ from `req`; empty when it is the same request. */
export function mismatches(bound: BoundRequest, req: BoundRequest): string[] {
  const diff: string[] = [];
  if (bound.action !== req.action) diff.push("action");
  if (bound.resource !== req.resource) diff.push("resource");
  if (bound.purpose !== req.purpose) diff.push("purpose");
  if (bound.skill.name !== req.skill.name) diff.push("skill.name");
  if (bound.skill.version !== req.skill.version) diff.push("skill.version");
  if ((bound.on_behalf_of?.subject ?? null) !== (req.on_behalf_of?.subject ?? null)) diff.push("on_behalf_of");
  return diff;
}
