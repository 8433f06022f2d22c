import { randomUUID } from "node:crypto";
import type { ChronContent, Decision, DecisionContent, PolicyRef, ShadowResult } from "../chron/record";
import type { ChronRow } from "../chron/record";
import { ApprovalSpecSchema, type ApprovalSpec } from "../approvals/model";
import { AuthenticationError, InputError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import type { AgentContext } from "../identity/identity-service";
import { evaluatePolicies, nanosOf, type ActivePolicy } from "../policy/policy-engine";
import type { EvalOutcome } from "../policy/evaluation/pool";
import { IdempotencyIndex, type RequestView } from "./idempotency";
import type { OnBehalfOf } from "../shared/principal";

export interface DecisionRequest {
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
  /** The user the agent acts for, when its token does not already say (RFC 8693 act semantics). */
  on_behalf_of?: OnBehalfOf;
  /** An approval a human gave for exactly this request; it is spent by the allow. */
  approval_id?: string;
}

/** The authenticated agent: who it is, by which credential, and for whom it acts. */
export interface Caller {
  agentId: string;
  credentialId: string;
  onBehalfOf: OnBehalfOf | null;
}

/** The approval a decision asked for, spent, or refused, as the agent sees it. */
export interface ApprovalReply {
  id: string;
  status: string;
  expires_at: string;
  /** Where the agent polls (GET, with ?wait=30 to wait for the human). */
  url: string;
  approvers?: { accountable_human: { id: string; name: string; email: string } | null; roles: string[]; humans: string[] };
  approved_by?: { type: string; id: string; name: string; human: { id: string; name: string; email: string } | null };
}

export interface DecisionResponse {
  decision_id: string;
  decision: Decision;
  allow: boolean;
  reasons: string[];
  reason_codes: string[];
  approval?: ApprovalReply;
  policy: PolicyRef;
  timestamp: string;
  chron: { seq: number; hash: string };
}

/** What the decision path reads: all of it in memory. */
export interface DecisionDeps {
  agentContext(agentId: string): AgentContext | null;
  activePolicy(): ActivePolicy | null;
  /** The version evaluated beside the active one (shadow mode), if any. It never decides. */
  shadowPolicy(): ActivePolicy | null;
  record(content: ChronContent): Promise<ChronRow>;
  /** Applied to the record after evaluation: the policy always sees the full input. */
  redact(content: DecisionContent): DecisionContent;
  /** Where requests that need a human's approval go; without it they are denied. */
  approvals?: ApprovalGate;
}

/** A decision recorded in Chron: its final content (before redaction), its row, and the approval it concerns. */
export interface Settled {
  content: DecisionContent;
  row: ChronRow;
  approval?: ApprovalReply;
}

/**
 * Decides and records a request that the policy will allow only with a human's approval: asks for
 * a new approval, or spends the one given if it is for exactly this request, or refuses it.
 */
export interface ApprovalGate {
  settle(content: DecisionContent, spec: ApprovalSpec, approvalId: string | null, ctx: AgentContext): Promise<Settled>;
}

/** Thrown by the decision path and the approval gate when Chron cannot record: nothing was decided. */
export function chronUnavailable(): ServiceUnavailableError {
  return new ServiceUnavailableError("chron_unavailable", "the decision could not be recorded in Chron, so none was made; retry later");
}

export const DECISION_PATH = "claiim/decision";

export type PolicyInput = ReturnType<typeof policyInput>;

/** The policy input, built from CLAIIM's own records and the token. Only `request` comes from the agent's body. */
export function policyInput(ctx: AgentContext, req: Omit<DecisionRequest, "on_behalf_of">, onBehalfOf: OnBehalfOf | null = null) {
  const { agent, organization, owner } = ctx;
  return {
    agent: {
      id: agent.id,
      name: agent.name,
      status: agent.status,
      organization: organization.slug,
      skills: Object.fromEntries(agent.skills.map((s) => [s.name, { version: s.version }])),
    },
    accountable_human: owner ? { id: owner.id, name: owner.name, email: owner.email, status: owner.status } : null,
    on_behalf_of: onBehalfOf ? { subject: onBehalfOf.subject } : null,
    request: { action: req.action, resource: req.resource, purpose: req.purpose, skill: { name: req.skill.name, version: req.skill.version } },
  };
}

/** A reason code: lower-case letters, digits and underscores, as the README's table lists them. */
export const REASON_CODE = /^[a-z][a-z0-9_]{0,63}$/;

/** What the policy (with CLAIIM's guards on top) answered. */
export interface Evaluation {
  allow: boolean;
  reasons: string[];
  /** codes[i] is the stable code of reasons[i]. */
  codes: string[];
  /** Set when a human must approve this exact request first (allow is then false). */
  approval: ApprovalSpec | null;
}

/** allow, deny, or approval_required: what the evaluation asks for, before any approval is looked at. */
export function outcomeOf(e: Pick<Evaluation, "allow" | "approval">): Decision {
  return e.allow ? "allow" : e.approval ? "approval_required" : "deny";
}

const denial = (code: string, reason: string): Evaluation => ({ allow: false, reasons: [reason], codes: [code], approval: null });

/**
 * The policy's answer, checked: {allow, reasons, reason_codes?, approval?}. Reasons without codes
 * (policies written before codes) get `policy_reason`. Anything malformed is an error message.
 */
function readResult(v: unknown): Evaluation | string {
  const d = v as { allow?: unknown; reasons?: unknown; reason_codes?: unknown; approval?: unknown } | null;
  if (!d || typeof d.allow !== "boolean" || !Array.isArray(d.reasons) || !d.reasons.every((r) => typeof r === "string")) {
    return "the policy did not return a decision of the form {allow, reasons}";
  }
  const reasons = d.reasons as string[];
  let codes = reasons.map(() => "policy_reason");
  if (d.reason_codes !== undefined) {
    if (!Array.isArray(d.reason_codes) || d.reason_codes.length !== reasons.length || !d.reason_codes.every((c) => typeof c === "string" && REASON_CODE.test(c))) {
      return "the policy's reason_codes are not one code (lower-case letters, digits, _) for each reason";
    }
    codes = d.reason_codes as string[];
  }
  if (d.approval === undefined) return { allow: d.allow, reasons, codes, approval: null };
  if (d.allow) return "the policy both allowed and asked for an approval";
  const approval = ApprovalSpecSchema.safeParse(d.approval);
  if (!approval.success) return `the policy's approval is malformed: ${approval.error.issues[0].path.join(".") || "approval"}: ${approval.error.issues[0].message}`;
  return { allow: false, reasons, codes, approval: approval.data };
}

/**
 * The decision from an evaluation's outcome, failing closed: no policy, a policy error, an
 * evaluation stopped at its deadline or memory limit, or a malformed result is a deny with the
 * cause as its reason. Identity rules that no policy may waive are applied on top: they turn an
 * allow, or a request for approval, into a deny. Everything it needs is in the input (and the
 * recorded clock), so that a recorded input replays to the same answer.
 */
export function decisionOf(policy: ActivePolicy | null, outcome: EvalOutcome | null | undefined, input: PolicyInput): Evaluation {
  if (!policy || !outcome) return denial("no_policy_active", "no policy is active: CLAIIM denies every action until one is");
  if (!outcome.ok) {
    return outcome.kind === "timeout" || outcome.kind === "memory"
      ? denial("evaluation_stopped", `policy evaluation stopped: ${outcome.message}`)
      : denial("evaluation_failed", `policy evaluation failed: ${outcome.message}`);
  }
  const result = readResult(outcome.value);
  if (typeof result === "string") return denial("evaluation_failed", `policy evaluation failed: ${result}`);
  const { agent, accountable_human: owner } = input;
  const guards: Evaluation = { allow: false, reasons: [], codes: [], approval: null };
  const guard = (code: string, reason: string) => (guards.reasons.push(reason), guards.codes.push(code));
  if (agent.status !== "active") guard(`agent_${agent.status}`, `agent ${agent.name} is ${agent.status}`);
  if (!owner) guard("owner_missing", `agent ${agent.name} has no accountable human`);
  else if (owner.status !== "active") guard("owner_inactive", `accountable human ${owner.email} is ${owner.status}`);
  if ((result.allow || result.approval) && guards.reasons.length) return guards;
  if (!result.allow && result.reasons.length === 0) return denial("denied_without_reason", "denied by policy, which gave no reason");
  return result;
}

/** Evaluates a policy on an input at a recorded time (replay, permissions), failing closed. */
export async function evaluate(policy: ActivePolicy | null, input: PolicyInput, nowNs: bigint): Promise<Evaluation> {
  if (!policy) return decisionOf(null, null, input);
  return decisionOf(policy, await policy.evaluate(input, nowNs), input);
}

/** What the shadow version would have decided; its reasons are kept only where it disagrees. */
export function shadowResult(shadow: ActivePolicy, evaluated: EvalOutcome, input: PolicyInput, outcome: Decision): ShadowResult {
  const result = decisionOf(shadow, evaluated, input);
  const ref = { version: shadow.version, revision: shadow.revision, decision: outcomeOf(result) };
  return ref.decision === outcome ? { ...ref, agrees: true } : { ...ref, agrees: false, reasons: result.reasons };
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
  async decideOnce(caller: Caller, req: DecisionRequest, key: string): Promise<{ response: DecisionResponse; replayed: boolean }> {
    const onBehalfOf = effectiveOnBehalfOf(caller, req);
    const view: RequestView = { action: req.action, resource: req.resource, purpose: req.purpose, skill: req.skill, on_behalf_of: onBehalfOf?.subject ?? null };
    return this.idempotency.run(caller.agentId, key, view, () => this.decide(caller, req, key));
  }

  async decide(caller: Caller, req: DecisionRequest, idempotencyKey?: string): Promise<DecisionResponse> {
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
      this.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw chronUnavailable();
    }
  }
}
