/** A reason CLAIIM gave, with its stable code when the policy gave one. */
export interface Reason {
  message: string;
  code?: string;
}

/**
 * The approval a decision waits for (`decision: "approval_required"`), as CLAIIM sends it: its id,
 * when it expires, who may approve, and where to poll for it.
 */
export interface Approval {
  id: string;
  expires_at?: string;
  approvers?: unknown;
  url?: string;
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

  constructor(decision: Decision) {
    const why = decision.reasons.map((r) => r.message).join("; ") || "no reason given";
    super(`CLAIIM did not allow this action (${decision.decision}, decision ${decision.decisionId}): ${why}`, decision.decision, 200);
    this.decision = decision;
    this.decisionId = decision.decisionId;
    this.reasons = decision.reasons;
    this.approval = decision.approval ?? null;
  }
}

/**
 * The decision needs a human's approval first (`decision: "approval_required"`). `approval` says
 * which approval and where to poll it. Until it is granted, the action must not run.
 */
export class ApprovalRequiredError extends DeniedError {
  declare readonly approval: Approval;
}

/** The agent could not authenticate: a revoked or unknown client, a bad secret or key, an agent that is not active. */
export class AuthenticationError extends ClaiimError {}

/** CLAIIM refused the request itself (a 4xx problem other than authentication): fix the request, do not retry it. */
export class RequestError extends ClaiimError {}

/** CLAIIM could not be reached, or stayed unavailable (503 and the like) through every retry. Nothing was allowed. */
export class UnavailableError extends ClaiimError {}

/** CLAIIM's answer was not a decision this SDK understands. Nothing was allowed. */
export class ProtocolError extends ClaiimError {}
