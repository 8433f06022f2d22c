import type { CodeWith } from "../lib/problems";
import { randomUUID } from "node:crypto";
import { chronUnavailable, type Recorder } from "../chron/chron-store";
import { canonicalize } from "../lib/canonical";
import type { ApproverRef, DecisionApproval, DecisionContent } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import { type Human } from "../identity/model";
import { ConflictError, NotAllowedError, NotFoundError, ServiceUnavailableError, type ClaiimError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { ApprovalStateConflict, type ApprovalStore } from "./approval-store";
import { mismatches, OPEN_STATUSES, type Approval, type ApprovalStatus, type BoundRequest } from "./model";
import { approvalEvent, approvalUrls, approverView, approversView, type Directory } from "./views";
import { WebhookNotifier, type WebhookSettings } from "./webhook";
import { actorOf, type Principal, type Role, rolesOf, SYSTEM } from "../shared/principal";
import type { ApprovalGate, ApprovalReply, Settled } from "./gate";
import type { ApprovalSpec } from "../policy/approval-spec";

export interface ApprovalSettings {
  /** When the policy names no ttl_seconds. */
  defaultTtlSeconds: number;
  /** No approval stays open longer, whatever the policy asks. */
  maxTtlSeconds: number;
  /** How long a closed approval stays in memory after its expiry, so that using it gets its precise reason. */
  keepClosedSeconds: number;
  /** Open approvals one agent may have; beyond, its requests are denied (approval_limit). */
  maxOpenPerAgent: number;
  /** Long-polls waiting at once; beyond, a poll answers at once. */
  maxWaiters: number;
  publicUrl: string;
  webhook: WebhookSettings | null;
  userAgent: string;
}

export interface ApprovalDeps {
  store: ApprovalStore;
  record: Recorder;
  /** Redaction of decision records (the approval itself keeps the request in full: the approver must read it). */
  redact(content: DecisionContent): DecisionContent;
  directory: Directory;
  logger: Logger;
}

export interface ApprovalFilter {
  status?: ApprovalStatus;
  orgId?: string;
  agentId?: string;
  /** An email: approvals that name this human (as accountable human or listed); "me": those the caller may approve. */
  approver?: string;
  limit: number;
}

type Verdict = "approved" | "rejected";
type Check = { ok: true; ref: ApproverRef } | { ok: false; error: ClaiimError };

/** Roles that may read every approval of their organisation. */
const READERS: readonly Role[] = ["admin", "approver", "auditor", "agent_manager"];

const isOpen = (a: Approval) => OPEN_STATUSES.includes(a.status);

function boundRequest(c: DecisionContent): BoundRequest {
  return { action: c.action, resource: c.resource, purpose: c.purpose, skill: { name: c.skill.name, version: c.skill.version }, on_behalf_of: c.on_behalf_of };
}

function notFound(id: string): NotFoundError {
  return new NotFoundError("approval_not_found", `approval ${id} does not exist`);
}

/**
 * Human approval of one exact request of an agent, used once.
 *
 * The decision path reads approvals from memory only: every approval that is open, or closed less
 * than keepClosedSeconds after its expiry, is held here, loaded at start and updated on every
 * change this process makes. Each change commits with its Chron record through the single writer.
 *
 * WARNING: a transition is claimed in memory, synchronously, before anything is awaited (`busy`),
 * so that two requests of this process can never both spend one approval; the database's
 * conditional update is the second guard, against another process or a hand edit. As for
 * identities, run one CLAIIM process per database.
 */
export class ApprovalService implements ApprovalGate {
  private readonly approvals = new Map<string, Approval>();
  /** The open ones, by agent: what the decision path and the expiry timer look through. */
  private readonly openByAgent = new Map<string, Set<Approval>>();
  private lastForgetAt = 0;
  /** Approvals being recorded, by agent and request: the same request asked meanwhile waits for it rather than asking the human twice. */
  private readonly asking = new Map<string, Promise<Approval | null>>();
  private readonly busy = new Map<string, "spend" | "decide" | "expire">();
  private readonly waiters = new Map<string, Set<() => void>>();
  private waiting = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /** After a failed expiry (Chron down), the sweep waits until then before it tries again. */
  private retryExpiryAt = 0;
  private stopped = false;
  private readonly notifier: WebhookNotifier | null;

  constructor(
    private readonly deps: ApprovalDeps,
    private readonly settings: ApprovalSettings,
  ) {
    this.notifier = settings.webhook
      ? new WebhookNotifier(settings.webhook, { ...deps, publicUrl: settings.publicUrl, userAgent: settings.userAgent }, (id) => this.approvals.get(id))
      : null;
  }

  async start(): Promise<void> {
    const since = new Date(Date.now() - this.settings.keepClosedSeconds * 1000);
    for (const a of await this.deps.store.listRecent(since)) this.hold(a);
    for (const a of this.approvals.values()) this.notifier?.schedule(a);
    // Approvals that expired while CLAIIM was down are expired (and recorded) by the first sweep, at once.
    this.arm();
  }

  /** Stops timers and deliveries, and answers every long-poll now. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.notifier?.stop();
    for (const id of [...this.waiters.keys()]) this.wake(id);
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
    const open = [...(this.openByAgent.get(ctx.agent.id) ?? [])].filter((a) => a.expiresAt.getTime() > now && !this.busy.has(a.id));
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
    const approval: Approval = {
      id: randomUUID(),
      orgId: ctx.organization.id,
      agentId: ctx.agent.id,
      ownerId: ctx.owner?.id ?? null,
      credentialId: content.requested_by.credential_id,
      decisionId: content.decision_id,
      request: bound,
      reasons: content.reasons,
      approvers: { accountable_human: spec.approvers.accountable_human, roles: spec.approvers.roles, humans: spec.approvers.humans },
      status: "pending",
      policyVersion: content.policy.version,
      createdAt: new Date(now),
      expiresAt: new Date(now + ttl * 1000),
      decidedAt: null,
      decidedBy: null,
      decisionReason: null,
      usedAt: null,
      usedByDecisionId: null,
      webhook: { state: this.notifier ? "pending" : "none", attempts: 0, lastAttemptAt: null, nextAttemptAt: null, lastError: null, deliveredAt: null },
    };
    const final: DecisionContent = { ...content, approval: this.recordedRef(approval) };
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
    this.hold(approval);
    this.asking.delete(key);
    settle(approval);
    this.arm();
    this.notifier?.schedule(approval);
    this.deps.logger.info("approval requested", { approval_id: approval.id, agent_id: approval.agentId, expires_at: approval.expiresAt.toISOString() });
    return { content: final, row: rows[0], approval: this.reply(approval) };
  }

  /** approval_required, answered with an approval that already exists for this request. */
  private async answerWith(content: DecisionContent, a: Approval): Promise<Settled> {
    const final: DecisionContent = { ...content, approval: this.recordedRef(a) };
    return { content: final, row: await this.recordOne(final), approval: this.reply(a) };
  }

  /** The agent comes back with an approval: allowed once, for exactly the approved request, before it expires. */
  private async use(content: DecisionContent, id: string, ctx: AgentContext): Promise<Settled> {
    const now = Date.parse(content.timestamp);
    const a = this.approvals.get(id);
    if (!a || a.agentId !== ctx.agent.id) {
      return this.deny(content, "approval_not_found", `approval ${id} is not one this agent holds (or it closed more than ${this.settings.keepClosedSeconds} s after its expiry)`);
    }
    const claim = this.busy.get(id);
    const refused = this.refusal(a, claim, now, boundRequest(content));
    if (refused) return this.deny(content, refused.code, refused.reason, a);
    // WARNING: claimed before the first await; a second use from now on is refused above.
    this.busy.set(id, "spend");
    const at = new Date(now);
    const spent: Approval = { ...a, status: "used", usedAt: at, usedByDecisionId: content.decision_id };
    const final: DecisionContent = {
      ...content,
      decision: "allow",
      policy_decision: content.decision,
      reasons: [`approval ${id}, given by ${this.approverName(a.decidedBy)}, allows exactly this request once`],
      reason_codes: ["approval_granted"],
      approval: this.recordedRef(spent),
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
      this.change(a, { status: "used", usedAt: at, usedByDecisionId: content.decision_id });
      return { content: final, row: rows[0], approval: this.reply(a) };
    } catch (err) {
      if (!(err instanceof ApprovalStateConflict)) {
        this.deps.logger.error("approval use not recorded; refusing to answer", { approval_id: id, decision_id: content.decision_id, error: (err as Error).message });
        throw chronUnavailable();
      }
      // Another process, or a hand edit, changed it in the database: believe the database.
      await this.refresh(id);
      const refusedNow = this.refusal(a, undefined, now, boundRequest(content)) ?? { code: "approval_used", reason: `approval ${id} was changed elsewhere and cannot be used` };
      return this.deny(content, refusedNow.code, refusedNow.reason, a);
    } finally {
      this.busy.delete(id);
      this.wake(id);
    }
  }

  /** Why this approval cannot allow this request now; null when it can. */
  private refusal(a: Approval, claim: string | undefined, now: number, req: BoundRequest): { code: string; reason: string } | null {
    if (a.status === "used" || claim === "spend") return { code: "approval_used", reason: `approval ${a.id} was already used; an approval allows one request once` };
    if (a.status === "rejected") return { code: "approval_rejected", reason: `approval ${a.id} was rejected by ${this.approverName(a.decidedBy)}: ${a.decisionReason}` };
    if (a.status === "expired" || claim === "expire" || a.expiresAt.getTime() <= now) return { code: "approval_expired", reason: `approval ${a.id} expired at ${a.expiresAt.toISOString()}` };
    if (a.status === "pending" || claim === "decide") return { code: "approval_pending", reason: `approval ${a.id} has not been approved yet; poll it, then ask again` };
    const diff = mismatches(a.request, req);
    if (diff.length) return { code: "approval_mismatch", reason: `approval ${a.id} was given for another request: ${diff.join(", ")} differ` };
    return null;
  }

  private deny(content: DecisionContent, code: string, reason: string, a?: Approval): Promise<Settled> {
    const final: DecisionContent = {
      ...content,
      decision: "deny",
      policy_decision: content.decision,
      reasons: [reason],
      reason_codes: [code],
      ...(a ? { approval: this.recordedRef(a) } : {}),
    };
    return this.recordOne(final).then((row) => ({ content: final, row, ...(a ? { approval: this.reply(a) } : {}) }));
  }

  private async recordOne(content: DecisionContent) {
    try {
      return (await this.deps.record([this.deps.redact(content)]))[0];
    } catch (err) {
      this.deps.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
  }

  /** The approval as a decision record names it. */
  private recordedRef(a: Approval): DecisionApproval {
    const ref: DecisionApproval = { id: a.id, status: a.status, expires_at: a.expiresAt.toISOString(), requested_decision_id: a.decisionId };
    if (a.status === "pending") ref.approvers = a.approvers;
    if (a.decidedBy && a.status !== "rejected") ref.approved_by = a.decidedBy;
    if (a.decidedAt && a.status !== "rejected") ref.approved_at = a.decidedAt.toISOString();
    return ref;
  }

  /** The approval as the agent's answer shows it. */
  private reply(a: Approval): ApprovalReply {
    const view: ApprovalReply = { id: a.id, status: a.status, expires_at: a.expiresAt.toISOString(), url: approvalUrls(a, this.settings.publicUrl).url };
    if (a.status === "pending" || a.status === "approved") view.approvers = approversView(a, this.deps.directory);
    if (a.decidedBy && a.status !== "rejected") view.approved_by = approverView(a.decidedBy)!;
    return view;
  }

  // --- humans decide ---

  approve(id: string, principal: Principal, reason: string, relayFor?: string): Promise<Approval> {
    return this.decide(id, principal, "approved", reason, relayFor);
  }

  reject(id: string, principal: Principal, reason: string, relayFor?: string): Promise<Approval> {
    return this.decide(id, principal, "rejected", reason, relayFor);
  }

  private async decide(id: string, p: Principal, verdict: Verdict, reason: string, relayFor: string | undefined): Promise<Approval> {
    const a = this.approvals.get(id);
    if (!a) {
      // Closed long ago, or never: either way there is nothing left to decide.
      const stored = await this.deps.store.find(id);
      if (!stored || !this.inScope(stored, p)) throw notFound(id);
      throw new ConflictError("approval_closed", `approval ${id} is ${stored.status}`, { approval_status: stored.status });
    }
    if (!this.inScope(a, p)) throw notFound(id);
    const check = this.check(a, p, relayFor);
    if (!check.ok) throw check.error;
    if (this.busy.has(id)) throw new ConflictError("approval_busy", `approval ${id} is changing right now; read it again`);
    if (a.status !== "pending") throw new ConflictError("approval_closed", `approval ${id} is ${a.status}`, { approval_status: a.status });
    const at = new Date();
    if (a.expiresAt <= at) {
      this.arm();
      throw new ConflictError("approval_expired", `approval ${id} expired at ${a.expiresAt.toISOString()}`, { approval_status: "expired" });
    }
    this.busy.set(id, "decide");
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
      this.change(a, { status: verdict, decidedAt: at, decidedBy: check.ref, decisionReason: reason });
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
      this.busy.delete(id);
      this.wake(id);
    }
  }

  /**
   * May this principal approve (or reject) this approval? The accountable human and listed humans
   * are recognised by email: a signed-in human by their token's (verified) email, an approver key
   * by the email of the human it relays for. A role counts only for a principal confined to the
   * organisation. Never an agent, never the user the request was made for, never outside the
   * organisation.
   */
  check(a: Approval, p: Principal, relayFor?: string): Check {
    const deny = (code: CodeWith<403>, message: string): Check => ({ ok: false, error: new NotAllowedError(code, message) });
    const requester = a.request.on_behalf_of?.subject.toLowerCase();
    const named = (h: Human | undefined): boolean =>
      !!h && h.orgId === a.orgId && h.status === "active" && ((a.approvers.accountable_human && h.id === a.ownerId) || a.approvers.humans.includes(h.email));
    const who = () => {
      const v = approversView(a, this.deps.directory);
      const list = [...(v.accountable_human ? [`the accountable human ${v.accountable_human.email}`] : []), ...v.humans, ...v.roles.map((r) => `role ${r} in the organisation`)];
      return `this approval may be given by: ${list.join(", ") || "nobody still active"}`;
    };
    if (p.kind === "agent") return deny("agent_not_allowed", "an agent never approves, not even its own request");
    if (p.orgId !== null && p.orgId !== a.orgId) return deny("approver_not_allowed", "the approval belongs to another organisation");
    if (p.kind === "human") {
      if (relayFor !== undefined) return deny("relay_not_allowed", "on_behalf_of is for approver keys that relay a human's answer; a signed-in human answers as themself");
      if (requester && (requester === p.subject.toLowerCase() || requester === p.email)) return deny("approval_self", "the request was made for you: you cannot approve it yourself");
      const human = p.email ? this.deps.directory.humanByEmail(a.orgId, p.email) : undefined;
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
      const human = this.deps.directory.humanByEmail(a.orgId, email);
      if (human && named(human)) return { ok: true, ref: { actor: actorOf(p), human: { id: human.id, name: human.name, email: human.email } } };
      return deny("approver_not_allowed", `${email} is not an approver of this request; ${who()}`);
    }
    if (a.approvers.roles.includes(p.role)) return { ok: true, ref: { actor: actorOf(p), human: null } };
    return deny("approver_not_allowed", `a key with role ${p.role} is not an approver of this request (an approver key may relay a named approver's answer with on_behalf_of); ${who()}`);
  }

  // --- reading ---

  /** An approval, if this principal may read it; else not found. Old ones come from the database. */
  async get(id: string, p: Principal): Promise<Approval> {
    const a = this.approvals.get(id) ?? (await this.deps.store.find(id));
    if (!a || !this.mayRead(a, p)) throw notFound(id);
    return a;
  }

  /**
   * The approval, once it is no longer pending, or after `seconds`, whichever comes first. Waiting
   * holds no database connection: it waits on the change in memory.
   */
  async wait(id: string, p: Principal, seconds: number, signal?: AbortSignal): Promise<Approval> {
    const a = await this.get(id, p);
    if (seconds <= 0 || a.status !== "pending" || this.stopped || this.waiting >= this.settings.maxWaiters || signal?.aborted) return a;
    await new Promise<void>((resolve) => {
      let set = this.waiters.get(id);
      if (!set) this.waiters.set(id, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        if (set.delete(done)) this.waiting -= 1;
        if (set.size === 0 && this.waiters.get(id) === set) this.waiters.delete(id);
        resolve();
      };
      // The expiry ends the wait too, even if recording it is late.
      const timer = setTimeout(done, Math.min(seconds * 1000, Math.max(0, a.expiresAt.getTime() - Date.now()) + 50));
      set.add(done);
      this.waiting += 1;
      signal?.addEventListener("abort", done, { once: true });
    });
    return this.approvals.get(id) ?? a;
  }

  /** Approvals in memory (open, or closed recently) this principal may read, newest first. */
  list(filter: ApprovalFilter, p: Principal): Approval[] {
    const email = filter.approver && filter.approver !== "me" ? filter.approver.toLowerCase() : null;
    const out: Approval[] = [];
    const all = [...this.approvals.values()].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || y.id.localeCompare(x.id));
    for (const a of all) {
      if (out.length >= filter.limit) break;
      if ((filter.status && a.status !== filter.status) || (filter.orgId && a.orgId !== filter.orgId) || (filter.agentId && a.agentId !== filter.agentId)) continue;
      if (!this.mayRead(a, p)) continue;
      if (filter.approver === "me" && !this.check(a, p).ok) continue;
      if (email) {
        const owner = a.ownerId ? this.deps.directory.human(a.ownerId) : undefined;
        if (!((a.approvers.accountable_human && owner?.email === email) || a.approvers.humans.includes(email))) continue;
      }
      out.push(a);
    }
    return out;
  }

  /** How many approvals are held in memory, and how many long-polls wait (for tests and the benchmark). */
  stats(): { held: number; open: number; waiting: number } {
    let open = 0;
    for (const set of this.openByAgent.values()) open += set.size;
    return { held: this.approvals.size, open, waiting: this.waiting };
  }

  private inScope(a: Approval, p: Principal): boolean {
    return p.orgId === null || p.orgId === a.orgId;
  }

  private mayRead(a: Approval, p: Principal): boolean {
    if (p.kind === "agent") return a.agentId === p.agentId;
    if (!this.inScope(a, p)) return false;
    if (rolesOf(p).some((r) => READERS.includes(r))) return true;
    // A signed-in human without such a role sees what they may answer.
    return this.check(a, p).ok;
  }

  // --- expiry ---

  /** Sets the timer for the next expiry among open approvals. */
  private arm(): void {
    if (this.stopped) return;
    let next = Infinity;
    for (const set of this.openByAgent.values()) for (const a of set) if (!this.busy.has(a.id)) next = Math.min(next, a.expiresAt.getTime());
    if (next === Infinity) return;
    next = Math.max(next, this.retryExpiryAt);
    if (this.timer && this.timerAt <= next) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = next;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      void this.sweep();
    }, Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1));
    this.timer.unref();
  }

  /** Expires (and records) every open approval whose time is up, and forgets closed ones kept long enough. */
  private async sweep(): Promise<void> {
    const now = Date.now();
    const due = [...this.openByAgent.values()].flatMap((set) => [...set]).filter((a) => a.expiresAt.getTime() <= now && !this.busy.has(a.id));
    for (const a of due) {
      if (this.stopped) return;
      if (isOpen(a) && !this.busy.has(a.id)) await this.expire(a);
    }
    // Forgetting walks every approval held, so it runs at most once a minute.
    if (now - this.lastForgetAt >= 60_000) {
      this.lastForgetAt = now;
      const forgetBefore = now - this.settings.keepClosedSeconds * 1000;
      for (const a of [...this.approvals.values()]) {
        if (!isOpen(a) && a.expiresAt.getTime() < forgetBefore && !this.busy.has(a.id) && !this.waiters.has(a.id)) this.approvals.delete(a.id);
      }
    }
    this.arm();
  }

  private async expire(a: Approval): Promise<void> {
    this.busy.set(a.id, "expire");
    try {
      const event = approvalEvent(this.deps.directory, a, "approval.expired", SYSTEM, { status: a.status }, { status: "expired", expires_at: a.expiresAt.toISOString() });
      await this.deps.record([event], (tx) => this.deps.store.transition(a.id, OPEN_STATUSES, { status: "expired" }, tx));
      this.change(a, { status: "expired" });
      this.deps.logger.info("approval expired", { approval_id: a.id });
    } catch (err) {
      if (err instanceof ApprovalStateConflict) await this.refresh(a.id).catch(() => undefined);
      else {
        // Not recorded, so not expired in the database; decisions refuse it by its time all the same.
        this.retryExpiryAt = Date.now() + 5000;
        this.deps.logger.error("approval expiry not recorded; will try again", { approval_id: a.id, error: (err as Error).message });
      }
    } finally {
      this.busy.delete(a.id);
      this.wake(a.id);
    }
  }

  // --- internals ---

  /** Reads the approval from the database again, after a conditional update found it changed. */
  private async refresh(id: string): Promise<void> {
    const stored = await this.deps.store.find(id);
    const held = this.approvals.get(id);
    if (stored && held) this.change(held, stored);
  }

  /** Holds an approval in memory, indexed as open when it is. */
  private hold(a: Approval): void {
    this.approvals.set(a.id, a);
    this.index(a);
  }

  /**
   * Applies a committed change to the approval held in memory (the same object everyone holds),
   * and keeps the open index right.
   */
  private change(a: Approval, patch: Partial<Approval>): void {
    Object.assign(a, patch);
    this.index(a);
  }

  private index(a: Approval): void {
    let set = this.openByAgent.get(a.agentId);
    if (isOpen(a)) {
      if (!set) this.openByAgent.set(a.agentId, (set = new Set()));
      set.add(a);
    } else if (set?.delete(a) && set.size === 0) this.openByAgent.delete(a.agentId);
  }

  private wake(id: string): void {
    for (const done of [...(this.waiters.get(id) ?? [])]) done();
  }

  private agentActor(ctx: AgentContext) {
    return { type: "agent" as const, id: ctx.agent.id, name: ctx.agent.name };
  }

  private approverName(ref: ApproverRef | null): string {
    if (!ref) return "nobody";
    return ref.human ? (ref.actor.type === "human" ? ref.human.email : `${ref.human.email} (through ${ref.actor.name})`) : `${ref.actor.type} ${ref.actor.name}`;
  }
}
