// Who acts: the roles, the callers CLAIIM authenticates (principals), the organisation they are
// confined to, and how Chron names whoever made a change (actors). Every pillar reads these.

/**
 * approver: approves or rejects agents' requests that need a human's approval, in one organisation.
 * metrics: reads /metrics and nothing else (for Prometheus).
 * witness: another CLAIIM that posts its Chron's signed tree heads here, for this one to witness (see chron/witness-receiver.ts).
 */
export type Role = "admin" | "policy_author" | "agent_manager" | "auditor" | "approver" | "witness" | "metrics";
export const ROLES: readonly Role[] = ["admin", "policy_author", "agent_manager", "auditor", "approver", "witness", "metrics"];

export interface Actor {
  type: "api_key" | "human" | "agent" | "system";
  id: string;
  name: string;
}

/** How an actor is named in state that records who did something (`api_key:<id>`). */
export function actorName(actor: Actor): string {
  return `${actor.type}:${actor.id}`;
}

/** The organisation a caller is confined to; null for a key that spans all of them. */
export interface Scope {
  orgId: string | null;
}

export const ALL_ORGANIZATIONS: Scope = { orgId: null };

/** CLAIIM itself, as the author of what it does on its own (the bootstrap key, start-up work). */
export const SYSTEM: Actor = { type: "system", id: "claiim", name: "CLAIIM" };

/** Who is calling. Agents can only ask for decisions about themselves. */
export type Principal =
  | { kind: "api_key"; id: string; name: string; role: Role; orgId: string | null }
  /** email: the token's `email` claim, lower-cased; null when absent or when the token says email_verified: false. */
  | { kind: "human"; issuer: string; subject: string; name: string; email: string | null; roles: Role[]; orgId: string | null }
  | { kind: "agent"; agentId: string; credentialId: string; orgId: string; onBehalfOf: OnBehalfOf | null };

/** The user an agent acts for (RFC 8693 `act`: the token's subject is the user, the actor the agent). */
export interface OnBehalfOf {
  subject: string;
}

export function principalName(p: Principal): string {
  return p.kind === "agent" ? `agent:${p.agentId}` : `${p.kind}:${actorOf(p).id}`;
}

/** Who Chron names as the author of a change. */
export function actorOf(p: Principal): Actor {
  switch (p.kind) {
    case "api_key":
      return { type: "api_key", id: p.id, name: p.name };
    case "human":
      return { type: "human", id: `${p.issuer}#${p.subject}`, name: p.name };
    case "agent":
      return { type: "agent", id: p.agentId, name: p.agentId };
  }
}

/** The roles a principal holds; agents hold none (they may only ask for decisions). */
export function rolesOf(p: Principal): Role[] {
  return p.kind === "api_key" ? [p.role] : p.kind === "human" ? p.roles : [];
}

/** The organisation a principal is confined to (null: all of them). */
export function scopeOf(p: Principal): Scope {
  return { orgId: p.orgId };
}
