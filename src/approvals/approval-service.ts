// Human approval of one exact request of an agent: asking, deciding, using once, reading.
import { chronUnavailable, type Recorder } from "../chron/chron-store";
import type { DecisionContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import { canonicalize } from "../lib/canonical";
import { ConflictError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { ApprovalSpec } from "../policy/approval-spec";
import { actorOf, type Principal } from "../shared/principal";
import { ApprovalStateConflict, type ApprovalStore } from "./approval-store";
import { checkApprover, inScope, matches, mayRead, type ApprovalFilter } from "./approvers";
import { ApprovalExpiry } from "./expiry";
import type { ApprovalGate, Settled } from "./gate";
import { HeldApprovals, isOpen } from "./held";
import { mismatches, type Approval, type ApprovalStatus } from "./model";
import { approvalEvent, type Directory } from "./views";
import { approverName, boundRequest, newApproval, recordedRef, refusal, reply } from "./answers";
import { WebhookNotifier } from "./webhook";
import type { ApprovalSettings } from "./config";

export interface ApprovalDeps {
  store: ApprovalStore;
  record: Recorder;
  /** Redaction of decision records (the approval itself keeps the request in full: the approver must read it). */
  redact(content: DecisionContent): DecisionContent;
  directory: Directory;
  logger: Logger;
}

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
  /** Approvals being recorded, by agent and request: the same request asked meanwhile waits for it rather than asking the human twice. */
  private readonly asking = new Map<string, Promise<Approval | null>>();
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

  async settle(content: DecisionContent, spec: ApprovalSpec, approvalId: string | null, ctx: AgentContext): Promise<Settled> {
    return approvalId === null ? this.request(content, spec, ctx) : this.use(content, approvalId, ctx);
  }

  /** approval_required: a new approval for this exact request, or the one already open for it. */
  private async request(content: DecisionContent, spec: ApprovalSpec, ctx: AgentContext): Promise<Settled> {
    const now = Date.parse(content.timestamp);
    const bound = boundRequest(content);
    const open = this.held.openOf(ctx.agent.id).filter((a) => a.expiresAt.getTime() > now && !this.held.claimOf(a.id));
    // Asking again for the same request does not ask the human again: the open approval is the answer.
    const same = open.find((a) => mismatches(a.request, bound).length === 0);
    if (same) return this.answerWith(content, same);
    const key = `${ctx.agent.id}\n${canonicalize(bound)}`;
    // WARNING: nothing is awaited between looking for an approval of this request and registering
    // this one as being asked, so that concurrent asks of one request find one another.
    const asking = this.asking.get(key);
    if (asking) {
      const asked = await asking;
      if (asked) return this.answerWith(content, asked);
    }
    if (open.length >= this.settings.maxOpenPerAgent) {
      return this.deny(content, "approval_limit", `agent ${ctx.agent.name} already has ${open.length} approvals waiting; ask again once they are decided or expired`);
    }
    const owner = ctx.owner && ctx.owner.status === "active" ? ctx.owner : null;
    const humans = spec.approvers.humans.filter((email) => this.deps.directory.humanByEmail(ctx.organization.id, email)?.status === "active");
    if (!(spec.approvers.accountable_human && owner) && humans.length === 0 && spec.approvers.roles.length === 0) {
      return this.deny(content, "approval_unavailable", "the policy asks for a human's approval, but names no active human of the organisation who could give it");
    }
    const ttl = Math.min(spec.ttl_seconds ?? this.settings.defaultTtlSeconds, this.settings.maxTtlSeconds);
    const approval = newApproval(content, spec, ctx, ttl, this.notifier !== null);
    const final: DecisionContent = { ...content, approval: recordedRef(approval) };
    const requested = approvalEvent(this.deps.directory, approval, "approval.requested", this.agentActor(ctx), null, {
      status: "pending",
      expires_at: approval.expiresAt.toISOString(),
      approvers: approval.approvers,
      webhook: approval.webhook.state,
    });
    let rows;
    let settle!: (a: Approval | null) => void;
    this.asking.set(key, new Promise((resolve) => (settle = resolve)));
    try {
      rows = await this.deps.record([this.deps.redact(final), requested], (tx) => this.deps.store.insert(approval, tx));
    } catch (err) {
      this.asking.delete(key);
      settle(null);
      this.deps.logger.error("approval request not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
    this.held.hold(approval);
    this.asking.delete(key);
    settle(approval);
    this.expiry.arm();
    this.notifier?.schedule(approval);
    this.deps.logger.info("approval requested", { approval_id: approval.id, agent_id: approval.agentId, expires_at: approval.expiresAt.toISOString() });
    return { content: final, row: rows[0], approval: reply(approval, this.deps.directory, this.settings.publicUrl) };
  }

  /** approval_required, answered with an approval that already exists for this request. */
  private async answerWith(content: DecisionContent, a: Approval): Promise<Settled> {
    const final: DecisionContent = { ...content, approval: recordedRef(a) };
    return { content: final, row: await this.recordOne(final), approval: reply(a, this.deps.directory, this.settings.publicUrl) };
  }

  /** The agent comes back with an approval: allowed once, for exactly the approved request, before it expires. */
  private async use(content: DecisionContent, id: string, ctx: AgentContext): Promise<Settled> {
    const now = Date.parse(content.timestamp);
    const a = await this.latest(id);
    if (!a || a.agentId !== ctx.agent.id) {
      return this.deny(content, "approval_not_found", `approval ${id} is not one this agent holds (or it closed more than ${this.settings.keepClosedSeconds} s after its expiry)`);
    }
    const claim = this.held.claimOf(id);
    const refused = refusal(a, claim, now, boundRequest(content));
    if (refused) return this.deny(content, refused.code, refused.reason, a);
    // WARNING: claimed before the first await; a second use from now on is refused above.
    this.held.claim(id, "spend");
    const at = new Date(now);
    const spent: Approval = { ...a, status: "used", usedAt: at, usedByDecisionId: content.decision_id };
    const final: DecisionContent = {
      ...content,
      decision: "allow",
      policy_decision: content.decision,
      reasons: [`approval ${id}, given by ${approverName(a.decidedBy)}, allows exactly this request once`],
      reason_codes: ["approval_granted"],
      approval: recordedRef(spent),
    };
    const used = approvalEvent(this.deps.directory, a, "approval.used", this.agentActor(ctx), { status: "approved" }, {
      status: "used",
      used_by_decision_id: content.decision_id,
      approved_by: a.decidedBy,
    });
    try {
      const rows = await this.deps.record([this.deps.redact(final), used], (tx) =>
        this.deps.store.transition(id, ["approved"], { status: "used", usedAt: at, usedByDecisionId: content.decision_id }, tx, at),
      );
      this.held.change(a, { status: "used", usedAt: at, usedByDecisionId: content.decision_id });
      return { content: final, row: rows[0], approval: reply(a, this.deps.directory, this.settings.publicUrl) };
    } catch (err) {
      if (!(err instanceof ApprovalStateConflict)) {
        this.deps.logger.error("approval use not recorded; refusing to answer", { approval_id: id, decision_id: content.decision_id, error: (err as Error).message });
        throw chronUnavailable();
      }
      // Another process, or a hand edit, changed it in the database: believe the database.
      await this.refresh(id);
      const refusedNow = refusal(a, undefined, now, boundRequest(content)) ?? { code: "approval_used", reason: `approval ${id} was changed elsewhere and cannot be used` };
      return this.deny(content, refusedNow.code, refusedNow.reason, a);
    } finally {
      this.held.release(id);
    }
  }

  private deny(content: DecisionContent, code: string, reason: string, a?: Approval): Promise<Settled> {
    const final: DecisionContent = {
      ...content,
      decision: "deny",
      policy_decision: content.decision,
      reasons: [reason],
      reason_codes: [code],
      ...(a ? { approval: recordedRef(a) } : {}),
    };
    return this.recordOne(final).then((row) => ({ content: final, row, ...(a ? { approval: reply(a, this.deps.directory, this.settings.publicUrl) } : {}) }));
  }

  private async recordOne(content: DecisionContent) {
    try {
      return (await this.deps.record([this.deps.redact(content)]))[0];
    } catch (err) {
      this.deps.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
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

  /** Reads the approval from the database again, after a conditional update found it changed. */
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

  private async refresh(id: string): Promise<void> {
    const stored = await this.deps.store.find(id);
    const held = this.held.get(id);
    if (stored && held) this.held.change(held, stored);
  }

  private agentActor(ctx: AgentContext) {
    return { type: "agent" as const, id: ctx.agent.id, name: ctx.agent.name };
  }
}
