// What the MCP gateway does when CLAIIM wants a human's approval first: it tells the client which
// approval, who may give it and where to poll it, and takes the approval back on a retry of the
// call (request metadata "io.claiim/approval_id"); or, when configured to, it waits for the human
// itself, with progress notifications that keep the client's request alive.
import { ApprovalWaitError, type Approval, type Decision } from "@claiim/sdk";
import type { Logger } from "../lib/logger";

/** Request metadata a client sends, on a retry of the call, to use the approval a human gave for it. */
export const META_APPROVAL_ID = "io.claiim/approval_id";

/** How often a waiting call reports progress (MCP hosts may reset their request timeout on it). */
const PROGRESS_EVERY_MS = 10_000;

/** What the gateway needs of the agent's CLAIIM client to wait (a @claiim/sdk client). */
export interface ApprovalWaiter {
  waitForApproval(pending: Decision, options: { timeoutMs?: number; signal?: AbortSignal }): Promise<Decision>;
}

/** The MCP request being served: its cancellation, its progress token, and how to notify its client. */
export interface RequestContext {
  signal?: AbortSignal;
  progressToken?: string | number;
  notify?: (notification: { method: "notifications/progress"; params: { progressToken: string | number; progress: number; total?: number; message?: string } }) => Promise<void>;
}

/** Who may give the approval, in words. */
export function approversText(approval: Approval): string {
  const a = (approval.approvers ?? {}) as { accountable_human?: { name: string; email: string } | null; roles?: string[]; humans?: string[] };
  const who = [
    ...(a.accountable_human ? [`${a.accountable_human.name} <${a.accountable_human.email}> (the agent's accountable human)`] : []),
    ...(a.humans ?? []),
    ...(a.roles ?? []).map((r) => `anyone with role ${r} in the organisation`),
  ];
  return who.join(", ") || "an approver of the organisation";
}

/** What the client is told about an approval it may wait for and use: which, who, until when, where, and how to use it. */
export function approvalText(approval: Approval): string {
  return (
    `A human must approve this exact call first: approval ${approval.id}, which ${approversText(approval)} may give` +
    `${approval.expires_at ? ` until ${approval.expires_at}` : ""}. Poll ${approval.url ?? `/v1/approvals/${approval.id}`} (GET, as the agent; ?wait=30 waits for the answer). ` +
    `Once it is approved, call again with the same arguments and _meta {"${META_APPROVAL_ID}": "${approval.id}"}.`
  );
}

/** The decision shown for a wait that ended without an approval to use: CLAIIM's approval_required decision, with why the wait ended. */
export function waitOutcome(err: ApprovalWaitError): Decision {
  return { ...err.decision, reasons: err.reasons, approval: err.approval };
}

/**
 * Waits for the human (up to `seconds`), reporting progress to the client when it asked for it,
 * and returns CLAIIM's decision made with the approval. Throws ApprovalWaitError when the wait ends
 * without one (rejected, expired, timed out), and the abort reason when the client cancels.
 */
export async function waitForHuman(claiim: ApprovalWaiter, pending: Decision, seconds: number, ctx: RequestContext, logger: Logger): Promise<Decision> {
  const approval = pending.approval!;
  const started = Date.now();
  const report = () => {
    if (ctx.progressToken === undefined || !ctx.notify) return;
    const waited = Math.round((Date.now() - started) / 1000);
    ctx
      .notify({
        method: "notifications/progress",
        params: { progressToken: ctx.progressToken, progress: waited, total: seconds, message: `waiting for approval ${approval.id} from ${approversText(approval)}` },
      })
      .catch(() => undefined);
  };
  logger.info("waiting for a human's approval", { approval_id: approval.id, decision_id: pending.decisionId, seconds });
  report();
  const ticker = setInterval(report, PROGRESS_EVERY_MS);
  try {
    return await claiim.waitForApproval(pending, { timeoutMs: seconds * 1000, signal: ctx.signal });
  } finally {
    clearInterval(ticker);
  }
}

export { ApprovalWaitError };
