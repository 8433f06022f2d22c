// Identity domain types. Stores speak these, never Prisma or wire types.
import type { Actor } from "../chron/record";

/** approver: approves or rejects agents' requests that need a human's approval, in one organisation. */
/** `witness`: another CLAIIM that posts its Chron's signed tree heads here, for this one to witness (see chron/witness-receiver.ts). */
export type Role = "admin" | "policy_author" | "agent_manager" | "auditor" | "approver" | "witness";
export const ROLES: readonly Role[] = ["admin", "policy_author", "agent_manager", "auditor", "approver", "witness"];

export type HumanStatus = "active" | "deactivated";
export type AgentStatus = "active" | "suspended" | "retired";

export interface Organization {
  id: string;
  slug: string;
  name: string;
  createdAt: Date;
}

export interface Human {
  id: string;
  orgId: string;
  name: string;
  email: string;
  status: HumanStatus;
  createdAt: Date;
}

export interface Skill {
  name: string;
  version: string;
  registeredAt: Date;
}

export interface Agent {
  id: string;
  orgId: string;
  name: string;
  description: string;
  ownerId: string;
  status: AgentStatus;
  statusReason: string | null;
  createdAt: Date;
  updatedAt: Date;
  skills: Skill[];
}

export interface AgentCredential {
  id: string;
  agentId: string;
  kid: string;
  createdAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
}

export type ClientMethod = "client_secret" | "private_key_jwt";

/** An OAuth 2.0 client through which an agent obtains short-lived access tokens. */
export interface AgentClient {
  id: string;
  agentId: string;
  method: ClientMethod;
  secretHash: string | null;
  publicJwk: Record<string, unknown> | null;
  createdAt: Date;
  revokedAt: Date | null;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  secretHash: string;
  role: Role;
  orgId: string | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
}

export interface SigningKey {
  kid: string;
  purpose: string;
  alg: "ES256";
  privateKeyPem: string;
  publicJwk: Record<string, string>;
  createdAt: Date;
  retiredAt: Date | null;
}

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
export function scopeOf(p: Principal): { orgId: string | null } {
  return { orgId: p.orgId };
}
