// Waiting for a human's approval: long-polls until the approval is answered, expires, or the
// caller stops waiting. Using the approval (asking the decision again) is the client's job.
import { ApprovalExpiredError, ApprovalRejectedError, ApprovalTimeoutError, ProtocolError, type Approval, type Decision } from "./errors";

export interface WaitOptions {
  /**
   * Gives up with ApprovalTimeoutError after this long, leaving the approval open. By default the
   * wait lasts until the approval expires (it cannot be used after that).
   */
  timeoutMs?: number;
  /**
   * Cancels the wait: the poll in flight is aborted, and the call rejects with the signal's reason.
   * Cancelled before the approval is used, it stays unused (ask again to use it).
   */
  signal?: AbortSignal;
}

/** One read of the approval: GET /v1/approvals/{id}?wait=seconds, abortable. */
export type Poll = (id: string, waitSeconds: number, signal: AbortSignal) => Promise<Approval>;

/** Seconds CLAIIM is asked to hold each poll (it allows at most 60; 30 stays under common proxy idle timeouts). */
export const POLL_SECONDS = 30;
/** A poll that comes back pending much sooner than asked (CLAIIM at its limit of waiting polls, or stopping) is followed by this pause, so that it never spins. */
const PAUSE_MS = 1000;
/** Without an expiry to go by, a wait with no timeout gives up after this long. */
const DEFAULT_TIMEOUT_MS = 15 * 60_000;
/** A wait to the approval's expiry lasts this much longer, for CLAIIM to record the expiry. */
const EXPIRY_GRACE_MS = 2000;

/** Sleeps, unless the signal aborts first (then rejects with its reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", stop);
    };
    const stop = () => {
      done();
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal?.addEventListener("abort", stop, { once: true });
  });
}

function who(a: Approval): string {
  const d = a.decided_by;
  if (!d) return "an approver";
  return d.human ? (d.type === "human" ? d.human.email : `${d.human.email} (through ${d.name})`) : `${d.type} ${d.name}`;
}

/**
 * Polls the approval of an approval_required decision until it can be used (approved; or used,
 * which CLAIIM then refuses with its own recorded reason), and returns it as last read. Throws
 * ApprovalRejectedError, ApprovalExpiredError or ApprovalTimeoutError when there is none to use,
 * the signal's reason when cancelled, and ProtocolError on a status it does not know.
 *
 * WARNING: this only decides when to ask again; it never allows anything. The allow can only come
 * from CLAIIM's answer to the decision asked with the approval.
 */
export async function untilAnswered(decision: Decision, poll: Poll, options: WaitOptions = {}): Promise<Approval> {
  const { signal } = options;
  let view: Approval = decision.approval!;
  const expiresAt = Date.parse(view.expires_at ?? "");
  const timeoutMs = options.timeoutMs ?? (Number.isFinite(expiresAt) ? Math.max(0, expiresAt - Date.now()) + EXPIRY_GRACE_MS : DEFAULT_TIMEOUT_MS);
  if (!(timeoutMs >= 0)) throw new RangeError("timeoutMs must be a number of milliseconds, 0 or more");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted();
    switch (view.status ?? "pending") {
      case "approved":
      case "used":
        return view;
      case "rejected":
        throw new ApprovalRejectedError(decision, view, "approval_rejected", `approval ${view.id} was rejected by ${who(view)}: ${view.decision_reason ?? "no reason given"}`);
      case "expired":
        throw new ApprovalExpiredError(decision, view, "approval_expired", `approval ${view.id} expired at ${view.expires_at ?? "its expiry"}`);
      case "pending":
        break;
      default:
        throw new ProtocolError(`approval ${view.id} has a status this SDK does not know (${String(view.status)}); it is not taken as approved`);
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new ApprovalTimeoutError(decision, view, "approval_pending", `approval ${view.id} was still pending after ${timeoutMs} ms of waiting; it stays open until ${view.expires_at ?? "it expires"}`);
    }
    const seconds = Math.min(POLL_SECONDS, Math.ceil(remaining / 1000));
    // This poll ends at the deadline or on the caller's abort, whichever comes first: the timeout
    // holds to the millisecond, not the second. (AbortSignal.any would do, but only from Node.js 20.3.)
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), remaining);
    signal?.addEventListener("abort", () => stop.abort(signal.reason), { once: true, signal: stop.signal });
    const started = Date.now();
    try {
      const next = await poll(view.id, seconds, stop.signal);
      if (next.id !== view.id) throw new ProtocolError(`asked for approval ${view.id}, CLAIIM answered about ${String(next.id)}`);
      view = next;
      if (view.status === "pending" && Date.now() - started < (seconds * 1000) / 2) await sleep(Math.min(PAUSE_MS, Math.max(0, deadline - Date.now())), stop.signal);
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (!stop.signal.aborted) throw err;
      // The deadline: the loop's next turn reports the timeout with the approval as last read.
    } finally {
      clearTimeout(timer);
      // Also drops the listener on the caller's signal.
      stop.abort();
    }
  }
}
