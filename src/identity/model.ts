// Identity domain types. Stores speak these, never Prisma or wire types.
import type { Role } from "../shared/principal";

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
