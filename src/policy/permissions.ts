import type { AgentContext } from "../identity/identity-service";
import { nanosOf, type ActivePolicy } from "./policy-engine";
import type { Decision } from "../chron/record";
import { evaluate, outcomeOf, policyInput } from "./decision-policy";

export interface PermissionCell {
  skill: string;
  version: string;
  action: string;
  resource: string;
  allow: boolean;
  /** allow, deny, or approval_required (allowed once a human approves the exact request). */
  decision: Decision;
  reasons: string[];
  reason_codes: string[];
}

export interface PermissionsReport {
  agent: { id: string; name: string; status: string };
  policy: { version: number; revision: string } | null;
  purpose: string;
  matrix: PermissionCell[];
}

interface RuleData {
  action?: unknown;
  resources?: unknown;
}

const PURPOSE = "effective-permissions report";

/** The (action, resource) pairs that a skill's rules in the policy data name. */
function declared(data: Record<string, unknown>, skill: string): { action: string; resource: string }[] {
  const skills = ((data.claiim as Record<string, unknown> | undefined)?.skills ?? {}) as Record<string, { permits?: RuleData[]; forbids?: RuleData[]; requires_approval?: RuleData[] }>;
  const rules = [...(skills[skill]?.permits ?? []), ...(skills[skill]?.forbids ?? []), ...(skills[skill]?.requires_approval ?? [])];
  const pairs = new Map<string, { action: string; resource: string }>();
  for (const rule of rules) {
    if (typeof rule.action !== "string" || !Array.isArray(rule.resources)) continue;
    for (const resource of rule.resources) {
      if (typeof resource === "string") pairs.set(`${rule.action}\0${resource}`, { action: rule.action, resource });
    }
  }
  return [...pairs.values()];
}

/**
 * What an agent may do, computed, never maintained by hand: the active policy is evaluated for the
 * agent, as the decision path would evaluate it, over every action and resource pattern that the
 * policy's data declares for the agent's registered skills. Nothing is recorded: it decides nothing.
 */
export async function effectivePermissions(ctx: AgentContext, policy: ActivePolicy | null): Promise<PermissionsReport> {
  const cells: Promise<PermissionCell>[] = [];
  const nowNs = nanosOf(new Date());
  for (const skill of ctx.agent.skills) {
    for (const { action, resource } of policy ? declared(policy.data, skill.name) : []) {
      const request = { action, resource, purpose: PURPOSE, skill: { name: skill.name, version: skill.version } };
      cells.push(
        evaluate(policy, policyInput(ctx, request), nowNs).then((result) => ({
          skill: skill.name,
          version: skill.version,
          action,
          resource,
          allow: result.allow,
          decision: outcomeOf(result),
          reasons: result.reasons,
          reason_codes: result.codes,
        })),
      );
    }
  }
  const matrix = await Promise.all(cells);
  return {
    agent: { id: ctx.agent.id, name: ctx.agent.name, status: ctx.agent.status },
    policy: policy ? { version: policy.version, revision: policy.revision } : null,
    purpose: PURPOSE,
    matrix,
  };
}
