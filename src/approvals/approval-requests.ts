// The decision path's side of human approval: a request that needs one asks for it (or finds the
// one already open for it), and a request that brings one spends it, once, or is refused.
import { chronUnavailable, IdempotencyKeyTaken, type Recorder } from "../chron/chron-store";
import type { DecisionContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import { canonicalize } from "../lib/canonical";
import type { Logger } from "../lib/logger";
import type { ApprovalSpec } from "../policy/approval-spec";
import { ApprovalAlreadyOpen, ApprovalStateConflict, type ApprovalStore } from "./approval-store";
import type { ApprovalExpiry } from "./expiry";
import type { Settled } from "./gate";
import type { HeldApprovals } from "./held";
import { mismatches, type Approval } from "./model";
import { approvalEvent, type Directory } from "./views";
import { approverName, boundRequest, newApproval, recordedRef, refusal, reply } from "./answers";
import type { WebhookNotifier } from "./webhook";
import type { ApprovalSettings } from "./config";

export interface ApprovalDeps {
  store: ApprovalStore;
  record: Recorder;
  /** Redaction of decision records (the approval itself keeps the request in full: the approver must read it). */
  redact(content: DecisionContent): DecisionContent;
  directory: Directory;
  logger: Logger;
}

/**
 * Asks for approvals and spends them, on the approvals ApprovalService holds in memory.
 *
 * WARNING: a use is claimed in memory (a claim on `held`), synchronously, before anything is
 * awaited, so that two requests of this process can never both spend one approval; the database's
 * conditional update is the second guard, against another process or a hand edit.
 */
export class ApprovalRequests {
  /** Approvals being recorded, by agent and request: the same request asked meanwhile waits for it rather than asking the human twice. */
  private readonly asking = new Map<string, Promise<Approval | null>>();

  constructor(
    private readonly deps: ApprovalDeps,
    private readonly settings: ApprovalSettings,
    private readonly held: HeldApprovals,
    private readonly expiry: ApprovalExpiry,
    private readonly notifier: WebhookNotifier | null,
    /** Reads an approval from the database again, after a conditional update found it changed. */
    private readonly refresh: (id: string) => Promise<void>,
    /** The approval as held, read again when this process may not know its latest state (ApprovalService.latest). */
    private readonly latest: (id: string) => Promise<Approval | undefined>,
  ) {}

  settle(content: DecisionContent, spec: ApprovalSpec, approvalId: string | null, ctx: AgentContext): Promise<Settled> {
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
      if (err instanceof ApprovalAlreadyOpen) {
        // Another process asked for this request a moment ago, before this one followed it: that approval is the answer.
        const open = err.approval;
        if (!this.held.get(open.id)) this.held.hold(open);
        settle(open);
        this.expiry.arm();
        return this.answerWith(content, open);
      }
      settle(null);
      // Another process decided under this request's Idempotency-Key first: the decision service answers with that.
      if (err instanceof IdempotencyKeyTaken) throw err;
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
      if (err instanceof IdempotencyKeyTaken) throw err;
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
      if (err instanceof IdempotencyKeyTaken) throw err;
      this.deps.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
  }

  private agentActor(ctx: AgentContext) {
    return { type: "agent" as const, id: ctx.agent.id, name: ctx.agent.name };
  }
}
