// Human approval of one exact request of an agent: held in memory, decided by humans, read; the
// decision path's asking and using is ApprovalRequests (approval-requests.ts).
import type { DecisionContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import { ConflictError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import type { ApprovalSpec } from "../policy/approval-spec";
import { actorOf, type Principal } from "../shared/principal";
import { ApprovalStateConflict } from "./approval-store";
import { checkApprover, inScope, matches, mayRead, type ApprovalFilter } from "./approvers";
import { ApprovalExpiry } from "./expiry";
import type { ApprovalGate, Settled } from "./gate";
import { HeldApprovals, isOpen } from "./held";
import { ApprovalRequests, type ApprovalDeps } from "./approval-requests";
import type { Approval, ApprovalStatus } from "./model";
import { approvalEvent } from "./views";
import { WebhookNotifier } from "./webhook";
import type { ApprovalSettings } from "./config";

type Verdict = "approved" | "rejected";

function notFound(id: string): NotFoundError {
  return new NotFoundError("approval_not_found", `approval ${id} does not exist`);
}

/** How far along an approval is: its status never goes back. */
const STAGE: Record<ApprovalStatus, number> = { pending: 0, approved: 1, rejected: 1, used: 2, expired: 2 };

/**
 * Human approval of one exact request of an agent, used once.
 *
 * The decision path reads approvals from memory only: every approval that is open, or closed less
 * than keepClosedSeconds after its expiry, is held here, loaded at start and updated on every
 * change this process makes, and on every change another process makes (followChange, from its
 * Chron event). Each change commits with its Chron record.
 *
 * WARNING: a transition is claimed in memory, synchronously, before anything is awaited (a claim on `held`),
 * so that two requests of this process can never both spend one approval; the database's
 * conditional update is the second guard, against another process or a hand edit.
 */

export class ApprovalService implements ApprovalGate {
  private readonly held = new HeldApprovals();
  private readonly expiry: ApprovalExpiry;
  /** The decision path's side: asking for approvals and spending them. */
  private readonly requests: ApprovalRequests;
  private waitsEnded = false;
  private readonly notifier: WebhookNotifier | null;

  constructor(
    private readonly deps: ApprovalDeps,
    private readonly settings: ApprovalSettings,
  ) {
    this.notifier = settings.webhook
      ? new WebhookNotifier(settings.webhook, { ...deps, publicUrl: settings.publicUrl, userAgent: settings.userAgent }, (id) => this.held.get(id))
      : null;
    this.expiry = new ApprovalExpiry({ ...deps, held: this.held, keepClosedSeconds: settings.keepClosedSeconds, refresh: (id) => this.refresh(id) });
    this.requests = new ApprovalRequests(deps, settings, this.held, this.expiry, this.notifier, (id) => this.refresh(id), (id) => this.latest(id));
  }

  async start(): Promise<void> {
    const since = new Date(Date.now() - this.settings.keepClosedSeconds * 1000);
    for (const a of await this.deps.store.listRecent(since)) {
      this.held.hold(a);
      this.notifier?.schedule(a);
    }
    // Approvals that expired while CLAIIM was down are expired (and recorded) by the first sweep, at once.
    this.expiry.arm();
  }

  /** At shutdown, before requests drain: long-polls answer now with the approval as it stands, and new ones do not wait. */
  endWaits(): void {
    this.waitsEnded = true;
    this.held.wakeAll();
  }

  /** Stops timers and deliveries, and answers every long-poll now. */
  async stop(): Promise<void> {
    this.endWaits();
    this.expiry.stop();
    this.notifier?.stop();
    await this.notifier?.settled();
  }

  // --- the decision path ---

  settle(content: DecisionContent, spec: ApprovalSpec, approvalId: string | null, ctx: AgentContext): Promise<Settled> {
    return this.requests.settle(content, spec, approvalId, ctx);
  }

  // --- humans decide ---

  approve(id: string, principal: Principal, reason: string, relayFor?: string): Promise<Approval> {
    return this.decide(id, principal, "approved", reason, relayFor);
  }

  reject(id: string, principal: Principal, reason: string, relayFor?: string): Promise<Approval> {
    return this.decide(id, principal, "rejected", reason, relayFor);
  }

  private async decide(id: string, p: Principal, verdict: Verdict, reason: string, relayFor: string | undefined): Promise<Approval> {
    const a = await this.latest(id);
    if (!a) {
      // Closed long ago, or never: either way there is nothing left to decide.
      const stored = await this.deps.store.find(id);
      if (!stored || !inScope(stored, p)) throw notFound(id);
      throw new ConflictError("approval_closed", `approval ${id} is ${stored.status}`, { approval_status: stored.status });
    }
    if (!inScope(a, p)) throw notFound(id);
    const check = checkApprover(a, p, this.deps.directory, relayFor);
    if (!check.ok) throw check.error;
    if (this.held.claimOf(id)) throw new ConflictError("approval_busy", `approval ${id} is changing right now; read it again`);
    if (a.status !== "pending") throw new ConflictError("approval_closed", `approval ${id} is ${a.status}`, { approval_status: a.status });
    const at = new Date();
    if (a.expiresAt <= at) {
      this.expiry.arm();
      throw new ConflictError("approval_expired", `approval ${id} expired at ${a.expiresAt.toISOString()}`, { approval_status: "expired" });
    }
    this.held.claim(id, "decide");
    try {
      const event = approvalEvent(
        this.deps.directory,
        a,
        `approval.${verdict}`,
        actorOf(p),
        { status: "pending" },
        { status: verdict, [verdict === "approved" ? "approved_by" : "rejected_by"]: check.ref, expires_at: a.expiresAt.toISOString() },
        reason,
      );
      await this.deps.record([event], (tx) => this.deps.store.transition(id, ["pending"], { status: verdict, decidedAt: at, decidedBy: check.ref, decisionReason: reason }, tx, at));
      this.held.change(a, { status: verdict, decidedAt: at, decidedBy: check.ref, decisionReason: reason });
      this.deps.logger.info(`approval ${verdict}`, { approval_id: id, by: `${check.ref.actor.type}:${check.ref.actor.id}` });
      return a;
    } catch (err) {
      if (err instanceof ApprovalStateConflict) {
        await this.refresh(id);
        throw new ConflictError("approval_closed", `approval ${id} was changed elsewhere; it is ${a.status}`, { approval_status: a.status });
      }
      this.deps.logger.error("approval decision not recorded", { approval_id: id, error: (err as Error).message });
      throw new ServiceUnavailableError("chron_unavailable", "the approval's change could not be recorded in Chron, so it was not made; retry later");
    } finally {
      this.held.release(id);
    }
  }

  // --- reading ---

  /** An approval, if this principal may read it; else not found. Old ones come from the database. */
  async get(id: string, p: Principal): Promise<Approval> {
    const a = this.held.get(id) ?? (await this.deps.store.find(id));
    if (!a || !mayRead(a, p, this.deps.directory)) throw notFound(id);
    return a;
  }

  /**
   * The approval, once it is no longer pending, or after `seconds`, whichever comes first. Waiting
   * holds no database connection: it waits on the change in memory.
   */
  async wait(id: string, p: Principal, seconds: number, signal?: AbortSignal): Promise<Approval> {
    const a = await this.get(id, p);
    if (seconds <= 0 || a.status !== "pending" || this.waitsEnded) return a;
    // The expiry ends the wait too, even if recording it is late.
    await this.held.waitFor(id, Math.min(seconds * 1000, Math.max(0, a.expiresAt.getTime() - Date.now()) + 50), this.settings.maxWaiters, signal);
    return this.held.get(id) ?? a;
  }

  /** Approvals in memory (open, or closed recently) this principal may read, newest first. */
  list(filter: ApprovalFilter, p: Principal): Approval[] {
    const out: Approval[] = [];
    for (const a of this.held.newestFirst()) {
      if (out.length >= filter.limit) break;
      if (matches(a, filter, p, this.deps.directory)) out.push(a);
    }
    return out;
  }

  /** How many approvals are held in memory, and how many long-polls wait (for tests and the benchmark). */
  stats(): { held: number; open: number; waiting: number } {
    return this.held.stats();
  }

  // --- internals ---

  /**
   * Another process asked for, answered, used or expired this approval (its Chron event; see
   * ChronFollower): it is held as stored now, and whoever waits on it here is answered. A status
   * only moves forward (pending, then approved or rejected, then used or expired), so a read that
   * a change of this process overtook is not applied over it.
   */
  async followChange(id: string): Promise<void> {
    await this.reread(id, true);
  }

  /**
   * The approval as held, read again from the database when this process may not know its latest
   * state: not held at all, or held as pending. Another process may have asked for it or answered
   * it a moment ago, before this one's follower applied the event; an approver or an agent whose
   * next request lands on another process (a load balancer, worker mode) must not be told
   * "not found" or "pending" for that. Only approval answers and uses pay the read, never a
   * plain decision.
   */
  private async latest(id: string): Promise<Approval | undefined> {
    const held = this.held.get(id);
    if (held && held.status !== "pending") return held;
    // One this process never held and that is closed already stays unheld, as before.
    return this.reread(id, false);
  }

  /** Reads the approval again; holds it, or moves what is held forward, and answers its waiters when it changed. */
  private async reread(id: string, holdClosed: boolean): Promise<Approval | undefined> {
    const stored = await this.deps.store.find(id);
    const held = this.held.get(id);
    if (!stored) return held;
    if (!held) {
      if (!holdClosed && !isOpen(stored)) return undefined;
      this.held.hold(stored);
    } else if (STAGE[stored.status] > STAGE[held.status]) this.held.change(held, stored);
    else return held;
    this.held.wake(id);
    return this.held.get(id);
  }

  /** Reads the approval from the database again, after a conditional update found it changed. */
  private async refresh(id: string): Promise<void> {
    const stored = await this.deps.store.find(id);
    const held = this.held.get(id);
    if (stored && held) this.held.change(held, stored);
  }
}
