import { DuplicateKeyError } from "../../../src/db/duplicate";
import { ConflictError } from "../../../src/lib/errors";
import type { IdentityStore } from "../../../src/identity/identity-store";
import type { Agent, AgentClient, AgentCredential, ApiKey, Human, Organization } from "../../../src/identity/model";

import { fieldsOf, type Transactional } from "./transactional";
import type { SigningKey } from "../../../src/keys/signing-keys";

const copy = <T>(v: T): T => structuredClone(v);

function save<T extends { id: string }>(list: T[], item: T): void {
  const i = list.findIndex((x) => x.id === item.id);
  if (i >= 0) list[i] = copy(item);
  else list.push(copy(item));
}

/** In-memory identities for service and route tests. */
export class FakeIdentityStore implements IdentityStore, Transactional {
  orgs: Organization[] = [];
  humans: Human[] = [];
  agents: Agent[] = [];
  credentials: AgentCredential[] = [];
  apiKeys: ApiKey[] = [];
  signingKeys: SigningKey[] = [];
  clients: AgentClient[] = [];
  usedAssertions = new Map<string, Date>();
  private readonly saved = fieldsOf(this as FakeIdentityStore, ["orgs", "humans", "agents", "credentials", "apiKeys", "signingKeys", "clients", "usedAssertions"]);
  snapshot = () => this.saved.snapshot();
  restore = (s: unknown) => this.saved.restore(s);

  async listOrganizations() {
    return copy(this.orgs);
  }
  async listHumans() {
    return copy(this.humans);
  }
  async listAgents() {
    return copy(this.agents);
  }
  async listCredentials() {
    return copy(this.credentials);
  }
  async listApiKeys() {
    return copy(this.apiKeys);
  }
  async listSigningKeys(purpose: string) {
    return copy(this.signingKeys.filter((k) => k.purpose === purpose));
  }
  async createOrganization(org: Organization) {
    if (this.orgs.some((o) => o.slug === org.slug)) throw new ConflictError("organization_exists", "exists");
    this.orgs.push(copy(org));
  }
  async saveHuman(human: Human) {
    if (this.humans.some((h) => h.id !== human.id && h.orgId === human.orgId && h.email === human.email)) throw new ConflictError("human_exists", "exists");
    save(this.humans, human);
  }
  async saveAgent(agent: Agent) {
    if (this.agents.some((a) => a.id !== agent.id && a.orgId === agent.orgId && a.name === agent.name)) throw new ConflictError("agent_exists", "exists");
    save(this.agents, agent);
  }
  async saveCredential(credential: AgentCredential) {
    save(this.credentials, credential);
  }
  async saveApiKey(key: ApiKey) {
    save(this.apiKeys, key);
  }
  async saveSigningKey(key: SigningKey) {
    const i = this.signingKeys.findIndex((k) => k.kid === key.kid);
    if (i >= 0) this.signingKeys[i] = copy(key);
    else this.signingKeys.push(copy(key));
  }
  async findOrganization(id: string) {
    return copy(this.orgs.find((x) => x.id === id) ?? null);
  }
  async findHuman(id: string) {
    return copy(this.humans.find((x) => x.id === id) ?? null);
  }
  async findAgent(id: string) {
    return copy(this.agents.find((x) => x.id === id) ?? null);
  }
  async findCredential(id: string) {
    return copy(this.credentials.find((x) => x.id === id) ?? null);
  }
  async findApiKey(id: string) {
    return copy(this.apiKeys.find((x) => x.id === id) ?? null);
  }
  async findClient(id: string) {
    return copy(this.clients.find((x) => x.id === id) ?? null);
  }
  async listClients() {
    return copy(this.clients);
  }
  async saveClient(client: AgentClient) {
    save(this.clients, client);
  }
  async useAssertion(key: string, expiresAt: Date) {
    if (this.usedAssertions.has(key)) throw new DuplicateKeyError("client assertion");
    this.usedAssertions.set(key, expiresAt);
  }
}
