import type { Tx } from "../db/database";
import type { Agent, AgentClient, AgentCredential, ApiKey, Human, Organization } from "./model";
import type { KeyStore } from "../keys/signing-keys";

/**
 * Persistence of identities. Every write takes the transaction of the Chron commit that records
 * it (see ChronWriter.commit): a change and its record commit together or not at all. Writes
 * throw ConflictError on a duplicate. It keeps the signing keys too (a KeyStore), in the same
 * database.
 */
export interface IdentityStore extends KeyStore {
  listOrganizations(): Promise<Organization[]>;
  listHumans(): Promise<Human[]>;
  listAgents(): Promise<Agent[]>;
  listCredentials(): Promise<AgentCredential[]>;
  listApiKeys(): Promise<ApiKey[]>;
  listClients(): Promise<AgentClient[]>;
  /** One identity as stored now, or null: what another process changed is re-read by its id (see IdentityFollower). */
  findOrganization(id: string): Promise<Organization | null>;
  findHuman(id: string): Promise<Human | null>;
  findAgent(id: string): Promise<Agent | null>;
  findCredential(id: string): Promise<AgentCredential | null>;
  findApiKey(id: string): Promise<ApiKey | null>;
  findClient(id: string): Promise<AgentClient | null>;

  createOrganization(org: Organization, tx: Tx): Promise<void>;
  saveHuman(human: Human, tx: Tx): Promise<void>;
  /** Inserts or replaces the agent and its skills. */
  saveAgent(agent: Agent, tx: Tx): Promise<void>;
  saveCredential(credential: AgentCredential, tx: Tx): Promise<void>;
  saveApiKey(key: ApiKey, tx: Tx): Promise<void>;
  saveClient(client: AgentClient, tx: Tx): Promise<void>;
  /** Marks a client assertion used; throws DuplicateKeyError if it already was. Forgets expired ones. */
  useAssertion(key: string, expiresAt: Date, tx: Tx): Promise<void>;
}
