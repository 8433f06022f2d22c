import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, Organization, SigningKey } from "./model";

export interface AgentFilter {
  orgId?: string;
  ownerId?: string;
  status?: AgentStatus;
}

/** Persistence of identities. Writes throw ConflictError on a duplicate; reads return null when absent. */
export interface IdentityStore {
  createOrganization(org: Organization): Promise<void>;
  listOrganizations(): Promise<Organization[]>;

  createHuman(human: Human): Promise<void>;
  listHumans(orgId?: string): Promise<Human[]>;

  createAgent(agent: Agent): Promise<void>;
  listAgents(filter: AgentFilter): Promise<Agent[]>;
  setAgentStatus(id: string, status: AgentStatus, reason: string | null, at: Date): Promise<void>;

  createCredential(credential: AgentCredential): Promise<void>;
  listCredentials(): Promise<AgentCredential[]>;
  revokeCredential(id: string, at: Date): Promise<void>;

  createApiKey(key: ApiKey): Promise<void>;
  listApiKeys(): Promise<ApiKey[]>;

  createSigningKey(key: SigningKey): Promise<void>;
  listSigningKeys(purpose: string): Promise<SigningKey[]>;
}
