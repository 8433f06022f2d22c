// The decision API's shapes: what an agent asks, who it is, what it is answered.
import type { Decision, PolicyRef } from "../chron/record";
import type { ApprovalReply } from "../approvals/gate";
import type { ActionRequest } from "../policy/decision-policy";
import type { OnBehalfOf } from "../shared/principal";

export interface DecisionRequest extends ActionRequest {
  /** The user the agent acts for, when its token does not already say (RFC 8693 act semantics). */
  on_behalf_of?: OnBehalfOf;
  /** An approval a human gave for exactly this request; it is spent by the allow. */
  approval_id?: string;
}

/** The authenticated agent: who it is, by which credential, and for whom it acts. */
export interface Caller {
  agentId: string;
  credentialId: string;
  onBehalfOf: OnBehalfOf | null;
}

export interface DecisionResponse {
  decision_id: string;
  decision: Decision;
  allow: boolean;
  reasons: string[];
  reason_codes: string[];
  approval?: ApprovalReply;
  policy: PolicyRef;
  timestamp: string;
  chron: { seq: number; hash: string };
}

