import type { ApproverRef } from "../api";

/** Who answered an approval: the human (and the key that relayed their answer), or a key in its own right. */
export function approverName(ref: ApproverRef): string {
  if (!ref.human) return `${ref.actor.name} (${ref.actor.type})`;
  const human = `${ref.human.name} <${ref.human.email}>`;
  return ref.actor.type === "human" ? human : `${human}, through ${ref.actor.name}`;
}

const TONES: Record<string, string> = { pending: "wait", approved: "ok", used: "ok", rejected: "bad", expired: "neutral" };

/** pending, approved, rejected, expired or used. */
export function ApprovalStatusBadge({ status }: { status: string }) {
  return <span className={`badge ${TONES[status] ?? "neutral"}`}>{status}</span>;
}
