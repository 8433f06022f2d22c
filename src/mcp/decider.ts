// The gateway's side of CLAIIM: what the agent may do (its permissions, cached briefly, for
// listing), and whether it may make one governed call (a decision, waiting for a human's approval
// when so configured). Every refusal says why, and nothing is called on an error: fail closed.
import type { Decision, DecisionRequest, Permissions } from "@claiim/sdk";
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "../lib/logger";
import { ApprovalWaitError, META_APPROVAL_ID, waitForHuman, waitOutcome, type ApprovalWaiter, type RequestContext } from "./approvals";
import { globMatch, resourceOf, type GatewayConfig, type Governed } from "./config";
import { Kind, META_ON_BEHALF_OF, META_PURPOSE, Meta, Refusal, describe, describeWait } from "./wire";

/** What the gateway needs of CLAIIM: the agent's decisions, its waits for approvals, and its own permissions (a @claiim/sdk client). */
export interface Asker extends ApprovalWaiter {
  decide(request: DecisionRequest, options?: { approvalId?: string }): Promise<Decision>;
  permissions(): Promise<Permissions>;
}

export class GatewayDecider {
  private permissionsCache: { atMs: number; value: Promise<Permissions> } | null = null;

  constructor(
    private readonly config: GatewayConfig,
    private readonly claiim: Asker,
    private readonly logger: Logger,
  ) {}

  /** The agent's permissions, reused for a few seconds; listing fails (an MCP error) when CLAIIM cannot be asked. */
  permissions(): Promise<Permissions> {
    const now = Date.now();
    if (!this.permissionsCache || now - this.permissionsCache.atMs > this.config.permissions_cache_seconds * 1000) {
      const value = this.claiim.permissions();
      this.permissionsCache = { atMs: now, value };
      value.catch(() => {
        if (this.permissionsCache?.value === value) this.permissionsCache = null;
      });
    }
    return this.permissionsCache.value.catch((err: Error) => {
      throw new McpError(ErrorCode.InternalError, `CLAIIM could not tell what this agent may do: ${err.message}`);
    });
  }

  /** The skill an action is taken under: the configured one, else the one skill whose permissions name the action. */
  private skillFor(g: Governed, p: Permissions): { name: string; version: string } | null {
    if (g.skill) return p.skills.find((s) => s.name === g.skill) ?? null;
    const named = new Set(p.matrix.filter((c) => c.action === g.action).map((c) => c.skill));
    const candidates = p.skills.filter((s) => named.has(s.name));
    if (candidates.length === 1) return candidates[0];
    return p.skills.length === 1 ? p.skills[0] : null;
  }

  /** Listed when the agent may take the action now: on the fixed resource, or on some resource when it comes from the request. */
  listable(g: Governed, p: Permissions, request: { uri?: string } = {}): boolean {
    const skill = this.skillFor(g, p);
    if (!skill) return false;
    const fixed = typeof g.resource === "string" || request.uri !== undefined ? resourceOf(g.resource, request) : null;
    // A call that needs a human's approval is listed: calling it is how the approval is asked for.
    return p.matrix.some((c) => (c.allow || c.decision === "approval_required") && c.skill === skill.name && c.action === g.action && (fixed === null || globMatch(c.resource, fixed)));
  }

  /**
   * Asks CLAIIM about one governed call. Returns the allow, or why not: a deny (or any other
   * outcome), or a refusal before asking (no resource in the request, no such skill, CLAIIM
   * unreachable or refusing the agent's credentials). With the request metadata's approval id,
   * CLAIIM is asked with that approval; with wait_for_approval_seconds, an approval_required answer
   * is waited for, and the answer is CLAIIM's decision made with the approval.
   */
  async ask(kind: Kind, name: string, g: Governed, request: { arguments?: Record<string, unknown>; uri?: string }, meta: Meta, ctx: RequestContext = {}): Promise<{ allowed: Decision } | Refusal> {
    const resource = resourceOf(g.resource, request);
    if (resource === null) {
      return { decision: null, message: `${kind} "${name}" was not called: its resource comes from ${typeof g.resource === "string" ? "" : g.resource.from}, which the request does not give as a string` };
    }
    let permissions: Permissions;
    try {
      permissions = await this.permissions();
    } catch (err) {
      return { decision: null, message: `${kind} "${name}" was not called: ${(err as Error).message}` };
    }
    const skill = this.skillFor(g, permissions);
    if (!skill) return { decision: null, message: `${kind} "${name}" was not called: the agent has no skill ${g.skill ? `"${g.skill}"` : `that names action "${g.action}"`}` };
    const purposeMeta = meta?.[META_PURPOSE];
    const oboMeta = meta?.[META_ON_BEHALF_OF];
    const approvalId = meta?.[META_APPROVAL_ID];
    if (approvalId !== undefined && (typeof approvalId !== "string" || !approvalId)) {
      return { decision: null, message: `${kind} "${name}" was not called: _meta "${META_APPROVAL_ID}" must be the id of the approval (a string)` };
    }
    const purpose = (typeof purposeMeta === "string" && purposeMeta) || g.purpose || this.config.purpose || `MCP ${kind} ${name}`;
    try {
      let decision = await this.claiim.decide(
        { action: g.action, resource, purpose, skill, ...(typeof oboMeta === "string" && oboMeta ? { on_behalf_of: oboMeta } : {}) },
        approvalId ? { approvalId } : {},
      );
      this.logger.info("decision", { kind, name, action: g.action, resource, decision: decision.decision, decision_id: decision.decisionId });
      if (decision.decision === "approval_required" && decision.approval && this.config.wait_for_approval_seconds > 0) {
        decision = await waitForHuman(this.claiim, decision, this.config.wait_for_approval_seconds, ctx, this.logger);
        this.logger.info("decision", { kind, name, action: g.action, resource, decision: decision.decision, decision_id: decision.decisionId, approval_id: decision.approval?.id });
      }
      // A client that cancelled meanwhile gets nothing run for it, not even on an allow (which CLAIIM recorded).
      if (decision.allowed && ctx.signal?.aborted) return { decision, message: `${kind} "${name}" was not called: the client cancelled the request (CLAIIM had allowed it, decision ${decision.decisionId})` };
      if (decision.allowed) return { allowed: decision };
      return { decision, message: describe(kind, name, decision) };
    } catch (err) {
      if (err instanceof ApprovalWaitError) return { decision: waitOutcome(err), message: describeWait(kind, name, err) };
      if (ctx.signal?.aborted) return { decision: null, message: `${kind} "${name}" was not called: the client cancelled the request` };
      this.logger.warn("CLAIIM could not decide; the call is refused", { kind, name, error: (err as Error).message });
      return { decision: null, message: `${kind} "${name}" was not called: CLAIIM could not decide (${(err as Error).message})` };
    }
  }
}
