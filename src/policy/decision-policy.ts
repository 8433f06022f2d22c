// The policy's side of a decision: the input CLAIIM builds from its own records, and the reading
// of what the policy answers (allow, deny, or a human's approval, with reason codes), failing
// closed, with the identity rules no policy may waive on top. Decisions, replay, shadow and the
// permissions report all decide through here, so that they agree.
import type { Decision, ShadowResult } from "../chron/record";
import type { AgentContext } from "../identity/identity-service";
import type { OnBehalfOf } from "../shared/principal";
import { ApprovalSpecSchema, type ApprovalSpec } from "./approval-spec";
import type { ActivePolicy } from "./policy-engine";
import type { EvalOutcome } from "./evaluation/types";

/** What an agent asks to do. */
export interface ActionRequest {
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
}

export const DECISION_PATH = "claiim/decision";

export type PolicyInput = ReturnType<typeof policyInput>;

/** The policy input, built from CLAIIM's own records and the token. Only `request` comes from the agent's body. */
export function policyInput(ctx: AgentContext, req: ActionRequest, onBehalfOf: OnBehalfOf | null = null) {
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

/** A reason code: lower-case letters, digits and underscores, as docs/api.md's table lists them. */
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

export const denial = (code: string, reason: string): Evaluation => ({ allow: false, reasons: [reason], codes: [code], approval: null });

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

