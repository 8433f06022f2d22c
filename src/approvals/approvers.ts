// Who may answer an approval, and who may read it: pure rules over the approval, the principal
// and the identity directory.
import type { ApproverRef } from "../chron/record";
import type { Human } from "../identity/model";
import { NotAllowedError, type ClaiimError } from "../lib/errors";
import type { CodeWith } from "../lib/problems";
import { actorOf, rolesOf, type Principal, type Role } from "../shared/principal";
import type { Approval, ApprovalStatus } from "./model";
import { approversView, type Directory } from "./views";

export type Check = { ok: true; ref: ApproverRef } | { ok: false; error: ClaiimError };

/** Roles that may read every approval of their organisation. */
const READERS: readonly Role[] = ["admin", "approver", "auditor", "agent_manager"];

/**
 * May this principal approve (or reject) this approval? The accountable human and listed humans
 * are recognised by email: a signed-in human by their token's (verified) email, an approver key
 * by the email of the human it relays for. A role counts only for a principal confined to the
 * organisation. Never an agent, never the user the request was made for, never outside the
 * organisation.
 */
export function checkApprover(a: Approval, p: Principal, directory: Directory, relayFor?: string): Check {
  const deny = (code: CodeWith<403>, message: string): Check => ({ ok: false, error: new NotAllowedError(code, message) });
  const requester = a.request.on_behalf_of?.subject.toLowerCase();
  const named = (h: Human | undefined): boolean =>
    !!h && h.orgId === a.orgId && h.status === "active" && ((a.approvers.accountable_human && h.id === a.ownerId) || a.approvers.humans.includes(h.email));
  const who = () => {
    const v = approversView(a, directory);
    const list = [...(v.accountable_human ? [`the accountable human ${v.accountable_human.email}`] : []), ...v.humans, ...v.roles.map((r) => `role ${r} in the organisation`)];
    return `this approval may be given by: ${list.join(", ") || "nobody still active"}`;
  };
  if (p.kind === "agent") return deny("agent_not_allowed", "an agent never approves, not even its own request");
  if (p.orgId !== null && p.orgId !== a.orgId) return deny("approver_not_allowed", "the approval belongs to another organisation");
  if (p.kind === "human") {
    if (relayFor !== undefined) return deny("relay_not_allowed", "on_behalf_of is for approver keys that relay a human's answer; a signed-in human answers as themself");
    if (requester && (requester === p.subject.toLowerCase() || requester === p.email)) return deny("approval_self", "the request was made for you: you cannot approve it yourself");
    const human = p.email ? directory.humanByEmail(a.orgId, p.email) : undefined;
    if (human && named(human)) return { ok: true, ref: { actor: actorOf(p), human: { id: human.id, name: human.name, email: human.email } } };
    if (p.orgId === a.orgId && p.roles.some((r) => a.approvers.roles.includes(r))) {
      return { ok: true, ref: { actor: actorOf(p), human: human ? { id: human.id, name: human.name, email: human.email } : null } };
    }
    return deny("approver_not_allowed", `${p.email ? `${p.email} is` : "you are (your token carries no verified email)"} not an approver of this request; ${who()}`);
  }
  if (p.orgId !== a.orgId) return deny("approver_not_allowed", `only a key confined to the approval's organisation may answer it; ${who()}`);
  if (relayFor !== undefined) {
    if (p.role !== "approver") return deny("relay_not_allowed", "only a key with the approver role may relay a human's answer");
    const email = relayFor.toLowerCase();
    if (requester === email) return deny("approval_self", `the request was made for ${email}, who cannot approve it`);
    const human = directory.humanByEmail(a.orgId, email);
    if (human && named(human)) return { ok: true, ref: { actor: actorOf(p), human: { id: human.id, name: human.name, email: human.email } } };
    return deny("approver_not_allowed", `${email} is not an approver of this request; ${who()}`);
  }
  if (a.approvers.roles.includes(p.role)) return { ok: true, ref: { actor: actorOf(p), human: null } };
  return deny("approver_not_allowed", `a key with role ${p.role} is not an approver of this request (an approver key may relay a named approver's answer with on_behalf_of); ${who()}`);
}

export function inScope(a: Approval, p: Principal): boolean {
  return p.orgId === null || p.orgId === a.orgId;
}

export function mayRead(a: Approval, p: Principal, directory: Directory): boolean {
  if (p.kind === "agent") return a.agentId === p.agentId;
  if (!inScope(a, p)) return false;
  if (rolesOf(p).some((r) => READERS.includes(r))) return true;
  // A signed-in human without such a role sees what they may answer.
  return checkApprover(a, p, directory).ok;
}

export interface ApprovalFilter {
  status?: ApprovalStatus;
  orgId?: string;
  agentId?: string;
  /** An email: approvals that name this human (as accountable human or listed); "me": those the caller may approve. */
  approver?: string;
  limit: number;
}

/** Whether an approval passes GET /v1/approvals' filters for this principal (who must be able to read it). */
export function matches(a: Approval, filter: ApprovalFilter, p: Principal, directory: Directory): boolean {
  if ((filter.status && a.status !== filter.status) || (filter.orgId && a.orgId !== filter.orgId) || (filter.agentId && a.agentId !== filter.agentId)) return false;
  if (!mayRead(a, p, directory)) return false;
  if (filter.approver === "me" && !checkApprover(a, p, directory).ok) return false;
  const email = filter.approver && filter.approver !== "me" ? filter.approver.toLowerCase() : null;
  if (email) {
    const owner = a.ownerId ? directory.human(a.ownerId) : undefined;
    if (!((a.approvers.accountable_human && owner?.email === email) || a.approvers.humans.includes(email))) return false;
  }
  return true;
}
