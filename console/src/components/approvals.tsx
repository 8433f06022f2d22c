import type { Approval, ApproverRef, Me } from "../api";
import { Time } from "./ui";

/**
 * Who answered an approval: the human (and the key that relayed their answer), or a key in its own
 * right. Chron records name them {actor, human}; the approvals API {type, id, name, human}.
 */
export function approverName(given: ApproverRef | NonNullable<Approval["decided_by"]>): string {
  const ref: ApproverRef = "actor" in given ? given : { actor: { type: given.type, id: given.id, name: given.name }, human: given.human };
  if (!ref.human) return `${ref.actor.name} (${ref.actor.type})`;
  const human = `${ref.human.name} <${ref.human.email}>`;
  return ref.actor.type === "human" ? human : `${human}, through ${ref.actor.name}`;
}

const TONES: Record<string, string> = { pending: "wait", approved: "ok", used: "ok", rejected: "bad", expired: "neutral" };

/** pending, approved, rejected, expired or used. */
export function ApprovalStatusBadge({ status }: { status: string }) {
  return <span className={`badge ${TONES[status] ?? "neutral"}`}>{status}</span>;
}

/** "in 59 min", "3 h ago": how far a time is from now, for a deadline read at a glance. */
function fromNow(at: string, now = Date.now()): string {
  const s = Math.round((Date.parse(at) - now) / 1000);
  const a = Math.abs(s);
  const span = a < 60 ? `${a} s` : a < 3600 ? `${Math.round(a / 60)} min` : a < 172_800 ? `${Math.round(a / 3600)} h` : `${Math.round(a / 86_400)} days`;
  return s >= 0 ? `in ${span}` : `${span} ago`;
}

/** When an approval expires, and how soon, while it can still be answered or used. */
export function Expiry({ approval: a }: { approval: Approval }) {
  const open = a.status === "pending" || a.status === "approved";
  return (
    <>
      <Time at={a.expires_at} />
      {open ? <span className="muted"> ({Date.parse(a.expires_at) > Date.now() ? fromNow(a.expires_at) : "due now"})</span> : null}
    </>
  );
}

/** Who the policy named to answer: the accountable human, holders of a role in the organisation, listed humans. */
export function WhoMayAnswer({ approvers: v }: { approvers: Approval["approvers"] }) {
  const who = [
    ...(v.accountable_human ? [`${v.accountable_human.name} <${v.accountable_human.email}> (accountable human)`] : []),
    ...v.humans,
    ...v.roles.map((r) => `any ${r} of the organisation`),
  ];
  if (who.length === 0) return <span className="muted">nobody still active</span>;
  return (
    <ul className="plain">
      {who.map((w) => (
        <li key={w}>{w}</li>
      ))}
    </ul>
  );
}

/** How the signed-in credential would answer: in its own right, or relaying one of these humans' answer. */
export interface AnswerAs {
  self: boolean;
  relayFor: string[];
}

/**
 * Whether to offer this credential the approve and reject buttons, and how, from what the API
 * already said. WARNING: a hint for the page only; ApprovalService.check decides, and a refusal
 * is shown as the API gives it. A signed-in human answers what GET /v1/approvals?approver=me
 * lists for them (`mine`). A key answers only its own organisation's approvals: in its own right
 * when the policy names its role, and, with the approver role, relaying a named human's answer
 * (never the human the request was made for). Auditors and agent managers read only.
 */
export function answerAs(me: Me | null, a: Approval, mine: boolean): AnswerAs | null {
  if (!me || a.status !== "pending" || Date.parse(a.expires_at) <= Date.now()) return null;
  if (me.kind === "human") return mine ? { self: true, relayFor: [] } : null;
  if (me.organization === null || me.organization !== a.organization) return null;
  const self = me.roles.some((r) => a.approvers.roles.includes(r));
  const requester = a.request.on_behalf_of?.subject.toLowerCase();
  const named = [...(a.approvers.accountable_human ? [a.approvers.accountable_human.email] : []), ...a.approvers.humans];
  const relayFor = me.roles.includes("approver") ? [...new Set(named)].filter((e) => e.toLowerCase() !== requester) : [];
  return self || relayFor.length ? { self, relayFor } : null;
}
