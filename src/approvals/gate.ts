// What the decision path asks of human approval: the gate a decision that needs approval goes
// through, and what it answers. Decisions import this; approvals implement it.
import type { ChronRow, DecisionContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import type { ApprovalSpec } from "../policy/approval-spec";

/** The approval a decision asked for, spent, or refused, as the agent sees it. */
export interface ApprovalReply {
  id: string;
  status: string;
  expires_at: string;
  /** Where the agent polls (GET, with ?wait=30 to wait for the human). */
  url: string;
  approvers?: { accountable_human: { id: string; name: string; email: string } | null; roles: string[]; humans: string[] };
  approved_by?: { type: string; id: string; name: string; human: { id: string; name: string; email: string } | null };
}

/** A decision recorded in Chron: its final content (before redaction), its row, and the approval it concerns. */
export interface Settled {
  content: DecisionContent;
  row: ChronRow;
  approval?: ApprovalReply;
}

/**
 * Decides and records a request that the policy will allow only with a human's approval: asks for
 * a new approval, or spends the one given if it is for exactly this request, or refuses it.
 */
export interface ApprovalGate {
  settle(content: DecisionContent, spec: ApprovalSpec, approvalId: string | null, ctx: AgentContext): Promise<Settled>;
}

