import { randomUUID } from "node:crypto";
import type { ChronContent, Decision, DecisionContent, PolicyRef, ShadowResult } from "../chron/record";
import type { ChronRow } from "../chron/record";
import { AuthenticationError, InputError, ServiceUnavailableError } from "../lib/errors";
import type { OnBehalfOf } from "../identity/model";
import type { Logger } from "../lib/logger";
import { LiveWork } from "../lib/pacer";
import type { AgentContext } from "../identity/identity-service";
import type { ActivePolicy } from "../policy/policy-engine";
import { IdempotencyIndex, type RequestView } from "./idempotency";

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
 * Evaluates, failing closed: no policy, a policy error or a malformed result is a deny with the
 * cause as its reason. Identity rules that no policy may waive are applied on top. Everything it
 * needs is in the input, so that a recorded input replays to the same answer.
 */
export function evaluate(policy: ActivePolicy | null, input: PolicyInput): { allow: boolean; reasons: string[] } {
  if (!policy) return { allow: false, reasons: ["no policy is active: CLAIIM denies every action until one is"] };
  let result: unknown;
  try {
    result = policy.evaluate(input);
  } catch (err) {
    return { allow: false, reasons: [`policy evaluation failed: ${(err as Error).message}`] };
  }
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

/** What the shadow version would have decided; its reasons are kept only where it disagrees. */
export function shadowResult(shadow: ActivePolicy, input: PolicyInput, allow: boolean): ShadowResult {
  const result = evaluate(shadow, input);
  const ref = { version: shadow.version, revision: shadow.revision, decision: result.allow ? ("allow" as const) : ("deny" as const) };
  return result.allow === allow ? { ...ref, agrees: true } : { ...ref, agrees: false, reasons: result.reasons };
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
    const { allow, reasons } = evaluate(policy, input);
    const policyRef: PolicyRef = { version: policy?.version ?? null, revision: policy?.revision ?? null, digest: policy?.digest ?? null };
    const content: DecisionContent = {
      kind: "decision",
      decision_id: randomUUID(),
      timestamp: new Date().toISOString(),
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
    if (shadowPolicy) content.shadow = shadowResult(shadowPolicy, input, allow);
    if (idempotencyKey !== undefined) content.idempotency_key = idempotencyKey;
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
