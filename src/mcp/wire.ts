// What the MCP gateway says to its clients beyond the protocol itself: the metadata keys it reads
// and writes, how a refusal reads, and how it pages through an upstream's lists.
import type { Decision } from "@claiim/sdk";
import { approvalText, ApprovalWaitError, type RequestContext } from "./approvals";

/** Request metadata (`params._meta`) a client may send: the purpose of the call and the user it is for. */
export const META_PURPOSE = "io.claiim/purpose";
export const META_ON_BEHALF_OF = "io.claiim/on_behalf_of";
/** Where results carry the decision that let them through or stopped them. */
export const META_DECISION = "io.claiim/decision";
/** JSON-RPC error code (implementation-defined range) of a resource read or prompt refused by CLAIIM. */
export const DENIED_ERROR_CODE = -32003;

export type Kind = "tool" | "prompt" | "resource";

/** Why a call does not go through: CLAIIM's decision, or a refusal made before CLAIIM could be asked. */
export type Refusal = { decision: Decision | null; message: string };

export type Meta = Record<string, unknown> | undefined;

export function describe(kind: Kind, name: string, d: Decision): string {
  const reasons = d.reasons.map((r) => r.message).join("; ") || "no reason given";
  const approval = d.decision === "approval_required" && d.approval ? ` ${approvalText(d.approval)}` : "";
  return `CLAIIM did not allow ${kind} "${name}" (${d.decision}): ${reasons}. decision_id ${d.decisionId}.${approval}`;
}

/** A wait for the human that ended without an approval to use; a timed-out one can still be used later. */
export function describeWait(kind: Kind, name: string, err: ApprovalWaitError): string {
  const reasons = err.reasons.map((r) => r.message).join("; ");
  const later = err.code === "approval_pending" ? ` ${approvalText(err.approval)}` : "";
  return `CLAIIM did not allow ${kind} "${name}" (${err.code}): ${reasons}. decision_id ${err.decisionId}.${later}`;
}

export function decisionMeta(d: Decision | null): Record<string, unknown> {
  return d ? { [META_DECISION]: { decision_id: d.decisionId, decision: d.decision, reasons: d.reasons, ...(d.approval ? { approval: d.approval } : {}) } } : {};
}

/** What a request handler knows of the request: its cancellation, its progress token, and how to notify its client. */
export function contextOf(meta: Meta, extra: { signal: AbortSignal; sendNotification: RequestContext["notify"] }): RequestContext {
  const token = meta?.progressToken;
  return { signal: extra.signal, notify: extra.sendNotification, ...(typeof token === "string" || typeof token === "number" ? { progressToken: token } : {}) };
}

export async function allPages<T>(list: (cursor: string | undefined) => Promise<{ nextCursor?: string } & T>, items: (page: T) => unknown[]): Promise<unknown[]> {
  const out: unknown[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const res = await list(cursor);
    out.push(...items(res));
    if (!res.nextCursor) break;
    cursor = res.nextCursor;
  }
  return out;
}

/**
 * The MCP gateway: between an MCP client and upstream MCP servers, as the agent. Every tools/call
 * (and every prompt or resource the configuration maps to an action) becomes a CLAIIM decision
 * first; only an allow reaches the upstream. Lists show what the agent may call now, from its
 * effective permissions. A tool the configuration does not name is hidden and refused.
 *
 * WARNING: fail closed. When CLAIIM cannot be asked, when the answer is anything but an allow,
 * or when the resource cannot be derived from the request, nothing is sent upstream.
 */
