import { randomUUID } from "node:crypto";
import type { ChronContent, Decision, DecisionContent, PolicyRef, ShadowResult } from "../chron/record";
import type { ChronRow } from "../chron/record";
import { AuthenticationError, InputError, ServiceUnavailableError } from "../lib/errors";
import type { OnBehalfOf } from "../identity/model";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import type { AgentContext } from "../identity/identity-service";
import { evaluatePolicies, nanosOf, type ActivePolicy } from "../policy/policy-engine";
import type { EvalOutcome } from "../policy/evaluation/pool";

export interface DecisionRequest {
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
  /** The user the agent acts for, when its token does not already say (RFC 8693 act semantics). */
  on_behalf_of?: OnBehalfOf;
}

/** The authenticated agent: who it is, by which credential, and for whom it acts. */
export interface Caller {
  agentId: string;
  credentialId: string;
  onBehalfOf: OnBehalfOf | null;
}

export interface DecisionResponse {
  decision_id: string;
  decision: Decision;
  allow: boolean;
  reasons: string[];
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

function isDecision(v: unknown): v is { allow: boolean; reasons: string[] } {
  const d = v as { allow?: unknown; reasons?: unknown } | null;
  return !!d && typeof d.allow === "boolean" && Array.isArray(d.reasons) && d.reasons.every((r) => typeof r === "string");
}

/**
 * The decision from an evaluation's outcome, failing closed: no policy, a policy error, an
 * evaluation stopped at its deadline or memory limit, or a malformed result is a deny with the
 * cause as its reason. Identity rules that no policy may waive are applied on top. Everything it
 * needs is in the input (and the recorded clock), so that a recorded input replays to the same answer.
 */
export function decisionOf(policy: ActivePolicy | null, outcome: EvalOutcome | null | undefined, input: PolicyInput): { allow: boolean; reasons: string[] } {
  if (!policy || !outcome) return { allow: false, reasons: ["no policy is active: CLAIIM denies every action until one is"] };
  if (!outcome.ok) {
    const why = outcome.kind === "timeout" || outcome.kind === "memory" ? "policy evaluation stopped" : "policy evaluation failed";
    return { allow: false, reasons: [`${why}: ${outcome.message}`] };
  }
  const result = outcome.value;
  if (!isDecision(result)) {
    return { allow: false, reasons: ["policy evaluation failed: the policy did not return a decision of the form {allow, reasons}"] };
  }
  const { agent, accountable_human: owner } = input;
  const guards: string[] = [];
  if (agent.status !== "active") guards.push(`agent ${agent.name} is ${agent.status}`);
  if (!owner) guards.push(`agent ${agent.name} has no accountable human`);
  else if (owner.status !== "active") guards.push(`accountable human ${owner.email} is ${owner.status}`);
  if (result.allow && guards.length) return { allow: false, reasons: guards };
  if (!result.allow && result.reasons.length === 0) return { allow: false, reasons: ["denied by policy, which gave no reason"] };
  return { allow: result.allow, reasons: result.reasons };
}

/** Evaluates a policy on an input at a recorded time (replay, permissions), failing closed. */
export async function evaluate(policy: ActivePolicy | null, input: PolicyInput, nowNs: bigint): Promise<{ allow: boolean; reasons: string[] }> {
  if (!policy) return decisionOf(null, null, input);
  return decisionOf(policy, await policy.evaluate(input, nowNs), input);
}

/** What the shadow version would have decided; its reasons are kept only where it disagrees. */
export function shadowResult(shadow: ActivePolicy, outcome: EvalOutcome, input: PolicyInput, allow: boolean): ShadowResult {
  const result = decisionOf(shadow, outcome, input);
  const ref = { version: shadow.version, revision: shadow.revision, decision: result.allow ? ("allow" as const) : ("deny" as const) };
  return result.allow === allow ? { ...ref, agrees: true } : { ...ref, agrees: false, reasons: result.reasons };
}

/**
 * The decision path: evaluate (in the evaluation workers, within the deadline), record in Chron, reply. The reply waits for the
 * record's commit; if Chron cannot record, nothing is decided (503).
 */
export class DecisionService {
  constructor(
    private readonly deps: DecisionDeps,
    private readonly logger: Logger,
    /** Counted here so that long jobs (verification, reports, replay) give way to decisions. */
    private readonly live: LiveWork = new LiveWork(),
  ) {}

  async decide(caller: Caller, req: DecisionRequest): Promise<DecisionResponse> {
    this.live.count += 1;
    const ctx = this.deps.agentContext(caller.agentId);
    if (!ctx) throw new AuthenticationError("token_invalid", "the agent token names no known agent");
    if (caller.onBehalfOf && req.on_behalf_of && caller.onBehalfOf.subject !== req.on_behalf_of.subject) {
      throw new InputError("on_behalf_of_mismatch", "the body names a different user than the token acts for", [{ path: "on_behalf_of.subject", message: "differs from the token" }]);
    }
    const onBehalfOf = caller.onBehalfOf ?? req.on_behalf_of ?? null;
    // Take the policy once: a swap during this request does not change what it was decided under.
    const policy = this.deps.activePolicy();
    const shadowPolicy = this.deps.shadowPolicy();
    const input = policyInput(ctx, req, onBehalfOf);
    // WARNING: the recorded timestamp is the policy's clock (time.now_ns), so that a replay or a
    // shadow evaluation reproduces this decision exactly.
    const at = new Date();
    const policies = [policy, shadowPolicy].filter((p): p is ActivePolicy => p !== null);
    const outcomes = await evaluatePolicies(policies, input, nanosOf(at));
    const { allow, reasons } = decisionOf(policy, policy ? outcomes[0] : null, input);
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
      decision: allow ? "allow" : "deny",
      reasons,
      policy: policyRef,
      bundles: policy ? { claiim: { revision: policy.revision } } : {},
      input,
    };
    if (shadowPolicy) content.shadow = shadowResult(shadowPolicy, outcomes[policy ? 1 : 0], input, allow);
    let row: ChronRow;
    try {
      row = await this.deps.record(this.deps.redact(content));
    } catch (err) {
      this.logger.error("decision not recorded; refusing to answer", { decision_id: content.decision_id, error: (err as Error).message });
      throw new ServiceUnavailableError("chron_unavailable", "the decision could not be recorded in Chron, so none was made; retry later");
    }
    return {
      decision_id: content.decision_id,
      decision: content.decision,
      allow,
      reasons,
      policy: policyRef,
      timestamp: content.timestamp,
      chron: { seq: row.seq, hash: row.hash },
    };
  }
}
