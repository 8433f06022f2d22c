import type { DecisionRequest } from "./client";

/** A reason CLAIIM gave, with its stable code when the policy gave one. */
export interface Reason {
  message: string;
  code?: string;
}

/** Who may give an approval, as CLAIIM names them. */
export interface Approvers {
  accountable_human: { id: string; name: string; email: string } | null;
  roles: string[];
  humans: string[];
}

/**
 * The approval a decision waits for (`decision: "approval_required"`), as CLAIIM sends it: its id,
 * status, when it expires, who may approve, and where to poll for it. Read from
 * GET /v1/approvals/{id} (as waitForApproval does), it also says who answered and why.
 */
export interface Approval {
  id: string;
  /** pending, approved, rejected, expired or used (a newer CLAIIM may add others). */
  status?: string;
  expires_at?: string;
  approvers?: Approvers | unknown;
  url?: string;
  /** Who approved or rejected it (GET /v1/approvals/{id}). */
  decided_by?: { type: string; id: string; name: string; human: { id: string; name: string; email: string } | null } | null;
  /** The approver's reason (GET /v1/approvals/{id}). */
  decision_reason?: string | null;
  [field: string]: unknown;
}

/** A decision as CLAIIM answered it. `allowed` is true only for `decision: "allow"` with `allow: true`. */
export interface Decision {
  decisionId: string;
  /** "allow", "deny", or another outcome a newer CLAIIM may give (such as "approval_required"): only "allow" allows. */
  decision: string;
  allowed: boolean;
  reasons: Reason[];
  policy: { version: number | null; revision: string | null; digest: string | null } | null;
  timestamp: string;
  /** Where the decision is in Chron. */
  chron: { seq: number; hash: string } | null;
  /** Present when the decision waits for a human's approval. */
  approval?: Approval;
  /** What was asked (without approval_id): waitForApproval asks it again with the approval. */
  request?: DecisionRequest;
  /** True when CLAIIM answered a retry with the decision it had already made under the same Idempotency-Key. */
  replayed: boolean;
  /** The response body, as received. */
  raw: Record<string, unknown>;
}

/** Every error this SDK throws. `code` is CLAIIM's stable problem code when there is one. */
export class ClaiimError extends Error {
  constructor(
    message: string,
    readonly code: string | null = null,
    readonly status: number | null = null,
    /** The RFC 9457 problem CLAIIM sent, if any. */
    readonly problem: Record<string, unknown> | null = null,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** CLAIIM did not allow the action: a deny, or any outcome other than allow. The action must not run. */
export class DeniedError extends ClaiimError {
  readonly decision: Decision;
  readonly decisionId: string;
  readonly reasons: Reason[];
  readonly approval: Approval | null;

  /** `outcome` replaces the decision's own reasons and code (for the end of a wait for an approval). */
  constructor(decision: Decision, outcome?: { code: string; reasons: Reason[]; approval: Approval }) {
    const reasons = outcome?.reasons ?? decision.reasons;
    const code = outcome?.code ?? decision.decision;
    const why = reasons.map((r) => r.message).join("; ") || "no reason given";
    super(`CLAIIM did not allow this action (${code}, decision ${decision.decisionId}): ${why}`, code, 200);
    this.decision = decision;
    this.decisionId = decision.decisionId;
    this.reasons = reasons;
    this.approval = outcome?.approval ?? decision.approval ?? null;
  }

  /** What was asked (waitForApproval asks it again with the approval). */
  get request(): DecisionRequest | undefined {
    return this.decision.request;
  }
}

/**
 * The decision needs a human's approval first (`decision: "approval_required"`). `approval` says
 * which approval and where to poll it. Until it is granted, the action must not run: pass this
 * error to `claiim.waitForApproval()` to wait for the human and ask again with the approval.
 */
export class ApprovalRequiredError extends DeniedError {
  declare readonly approval: Approval;
}

/**
 * A wait for an approval ended without one to use: `approval` is the approval as last read from
 * CLAIIM, `decision` the approval_required decision that asked for it, `reasons` why the wait ended
 * (with the code CLAIIM itself gives when asked with that approval). Nothing was allowed.
 */
export abstract class ApprovalWaitError extends DeniedError {
  declare readonly approval: Approval;
  constructor(decision: Decision, approval: Approval, code: string, message: string) {
    super(decision, { code, reasons: [{ message, code }], approval });
  }
}

/** A human rejected the approval (`approval.decided_by`, `approval.decision_reason`). Code `approval_rejected`. */
export class ApprovalRejectedError extends ApprovalWaitError {}

/** The approval expired before anyone answered it, or before it was used. Code `approval_expired`. */
export class ApprovalExpiredError extends ApprovalWaitError {}

/**
 * The wait's timeout passed with the approval still pending (code `approval_pending`). The approval
 * stays open: wait again with this error, or ask again later with the same request.
 */
export class ApprovalTimeoutError extends ApprovalWaitError {}

/** The agent could not authenticate: a revoked or unknown client, a bad secret or key, an agent that is not active. */
export class AuthenticationError extends ClaiimError {}

/** CLAIIM refused the request itself (a 4xx problem other than authentication): fix the request, do not retry it. */
export class RequestError extends ClaiimError {}

/** CLAIIM could not be reached, or stayed unavailable (503 and the like) through every retry. Nothing was allowed. */
export class UnavailableError extends ClaiimError {}

/** CLAIIM's answer was not a decision this SDK understands. Nothing was allowed. */
export class ProtocolError extends ClaiimError {}
