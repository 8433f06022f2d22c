import { randomUUID } from "node:crypto";
import { chronUnavailable, IdempotencyKeyTaken } from "../chron/chron-store";
import type { ChronContent, ChronRow, DecisionContent, PolicyRef } from "../chron/record";
import type { ApprovalGate, Settled } from "../approvals/gate";
import { AuthenticationError, InputError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import type { AgentContext } from "../identity/identity-service";
import { evaluatePolicies, nanosOf, type ActivePolicy } from "../policy/policy-engine";
import { DECISION_PATH, decisionOf, denial, outcomeOf, policyInput, shadowResult } from "../policy/decision-policy";
import { IdempotencyIndex, type RequestView } from "./idempotency";
import type { Caller, DecisionRequest, DecisionResponse } from "./model";
import type { OnBehalfOf } from "../shared/principal";
import type { TraceRef } from "../ops/tracing";

/** What the decision path reads: all of it in memory. */
export interface DecisionDeps {
  agentContext(agentId: string): AgentContext | null;
  activePolicy(): ActivePolicy | null;
  /** The version evaluated beside the active one (shadow mode), if any. It never decides. */
  shadowPolicy(): ActivePolicy | null;
  record(content: ChronContent): Promise<ChronRow>;
  /** The record that holds an agent's Idempotency-Key in the database, if CLAIIM wrote it (ChronWriter.claimOf). Read only when recording found the key taken. */
  claimOf(agentId: string, key: string): Promise<ChronRow | null>;
  /** Applied to the record after evaluation: the policy always sees the full input. */
  redact(content: DecisionContent): DecisionContent;
  /** Where requests that need a human's approval go; without it they are denied. */
  approvals?: ApprovalGate;
}

/** The user the agent acts for: the token's, or the body's; both naming different users is refused. */
function effectiveOnBehalfOf(caller: Caller, req: DecisionRequest): OnBehalfOf | null {
  if (caller.onBehalfOf && req.on_behalf_of && caller.onBehalfOf.subject !== req.on_behalf_of.subject) {
    throw new InputError("on_behalf_of_mismatch", "the body names a different user than the token acts for", [{ path: "on_behalf_of.subject", message: "differs from the token" }]);
  }
  return caller.onBehalfOf ?? req.on_behalf_of ?? null;
}

/**
 * The decision path: evaluate in-process, record in Chron, reply. The reply waits for the
 * record's commit; if Chron cannot record, nothing is decided (503).
 */
export class DecisionService {
  constructor(
    private readonly deps: DecisionDeps,
    private readonly logger: Logger,
    /** Counted here so that long jobs (verification, reports, replay) give way to decisions. */
    private readonly live: LiveWork = new LiveWork(),
    private readonly idempotency: IdempotencyIndex = new IdempotencyIndex(),
  ) {}

  /**
   * A decision under an Idempotency-Key: the first request with the key decides; a repeat of the
   * same request gets that answer again (replayed), and no second Chron record; another request
   * with the key is a 409.
   */
  async decideOnce(caller: Caller, req: DecisionRequest, key: string, trace?: TraceRef): Promise<{ response: DecisionResponse; replayed: boolean }> {
    const onBehalfOf = effectiveOnBehalfOf(caller, req);
    const view: RequestView = { action: req.action, resource: req.resource, purpose: req.purpose, skill: req.skill, on_behalf_of: onBehalfOf?.subject ?? null };
    const decide = () => this.decide(caller, req, key, trace);
    try {
      return await this.idempotency.run(caller.agentId, key, view, decide);
    } catch (err) {
      if (!(err instanceof IdempotencyKeyTaken)) throw err;
    }
    // The database refused the record: another process (a worker, a replica) decided under this key
    // first, or this one did and has forgotten it since (maxKeys). That record is the answer, read
    // once, as a restart would have: a replay of the same request, a 409 for another one.
    let first: ChronRow | null;
    try {
      first = await this.deps.claimOf(caller.agentId, key);
    } catch (err) {
      this.logger.error("the record holding an Idempotency-Key could not be read; refusing to answer", { agent_id: caller.agentId, error: (err as Error).message });
      throw chronUnavailable();
    }
    // Otherwise the key's record is older than the TTL (or no longer CLAIIM's to answer with): the
    // key binds nothing any more, and the database keeps it for that record, so this request is
    // decided as one sent without a key. (So is it if the index cannot hold the key: maxKeys 0.)
    const unkeyed = () => this.decide(caller, req, undefined, trace);
    if (first && this.idempotency.load([first]) === 1) return this.idempotency.run(caller.agentId, key, view, unkeyed);
    return { response: await unkeyed(), replayed: false };
  }

  async decide(caller: Caller, req: DecisionRequest, idempotencyKey?: string, trace?: TraceRef): Promise<DecisionResponse> {
    this.live.count += 1;
    const ctx = this.deps.agentContext(caller.agentId);
    if (!ctx) throw new AuthenticationError("token_invalid", "the agent token names no known agent");
    const onBehalfOf = effectiveOnBehalfOf(caller, req);
    // Take the policy once: a swap during this request does not change what it was decided under.
    const policy = this.deps.activePolicy();
    const shadowPolicy = this.deps.shadowPolicy();
    const input = policyInput(ctx, req, onBehalfOf);
    // WARNING: the recorded timestamp is the policy's clock (time.now_ns), so that a replay or a
    // shadow evaluation reproduces this decision exactly.
    const at = new Date();
    const policies = [policy, shadowPolicy].filter((p): p is ActivePolicy => p !== null);
    const outcomes = await evaluatePolicies(policies, input, nanosOf(at));
    let evaluation = decisionOf(policy, policy ? outcomes[0] : null, input);
    if (evaluation.approval && !this.deps.approvals) {
      evaluation = { ...denial("approval_unavailable", "the policy asks for a human's approval, which this CLAIIM cannot take"), approval: null };
    }
    const policyRef: PolicyRef = { version: policy?.version ?? null, revision: policy?.revision ?? null, digest: policy?.digest ?? null };
    const content: DecisionContent = {
      kind: "decision",
      decision_id: randomUUID(),
      timestamp: at.toISOString(),
      path: DECISION_PATH,
      organization: { id: ctx.organization.id, slug: ctx.organization.slug },
      agent: { id: ctx.agent.id, name: ctx.agent.name, status: ctx.agent.status },
      accountable_human: input.accountable_human,
      on_behalf_of: input.on_behalf_of,
      requested_by: { credential_id: caller.credentialId },
      action: req.action,
      resource: req.resource,
      purpose: req.purpose,
      skill: { name: req.skill.name, version: req.skill.version },
      decision: outcomeOf(evaluation),
      reasons: evaluation.reasons,
      reason_codes: evaluation.codes,
      policy: policyRef,
      bundles: policy ? { claiim: { revision: policy.revision } } : {},
      input,
    };
    if (shadowPolicy) content.shadow = shadowResult(shadowPolicy, outcomes[policy ? 1 : 0], input, content.decision);
    if (idempotencyKey !== undefined) content.idempotency_key = idempotencyKey;
    if (trace) {
      content.trace_id = trace.trace_id;
      content.span_id = trace.span_id;
    }
    const settled = evaluation.approval ? await this.deps.approvals!.settle(content, evaluation.approval, req.approval_id ?? null, ctx) : await this.recordPlain(content);
    const final = settled.content;
    return {
      decision_id: final.decision_id,
      decision: final.decision,
      allow: final.decision === "allow",
      reasons: final.reasons,
      reason_codes: final.reason_codes ?? [],
      ...(settled.approval ? { approval: settled.approval } : {}),
      policy: policyRef,
      timestamp: final.timestamp,
      chron: { seq: settled.row.seq, hash: settled.row.hash },
    };
  }

  private async recordPlain(content: DecisionContent): Promise<Settled> {
    try {
      return { content, row: await this.deps.record(this.deps.redact(content)) };
    } catch (err) {
      if (err instanceof IdempotencyKeyTaken) throw err;
      this.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
  }
}
