import { ConflictError } from "../lib/errors";
import type { AgentFilter, IdentityStore } from "./identity-store";
import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, Organization, SigningKey } from "./model";

export class FakeIdentityStore implements IdentityStore {
  orgs: Organization[] = [];
  humans: Human[] = [];
  agents: Agent[] = [];
  credentials: AgentCredential[] = [];
  apiKeys: ApiKey[] = [];
  signingKeys: SigningKey[] = [];

  async createOrganization(org: Organization) {
    if (this.orgs.some((o) => o.slug === org.slug)) throw new ConflictError("organization_exists", "exists");
    this.orgs.push({ ...org });
  }
  async listOrganizations() {
    return this.orgs.map((o) => ({ ...o }));
  }
  async createHuman(human: Human) {
    if (this.humans.some((h) => h.orgId === human.orgId && h.email === human.email)) throw new ConflictError("human_exists", "exists");
    this.humans.push({ ...human });
  }
  async listHumans(orgId?: string) {
    return this.humans.filter((h) => !orgId || h.orgId === orgId).map((h) => ({ ...h }));
  }
  async createAgent(agent: Agent) {
    if (this.agents.some((a) => a.orgId === agent.orgId && a.name === agent.name)) throw new ConflictError("agent_exists", "exists");
    this.agents.push({ ...agent, skills: agent.skills.map((s) => ({ ...s })) });
  }
  async listAgents(f: AgentFilter) {
    return this.agents
      .filter((a) => (!f.orgId || a.orgId === f.orgId) && (!f.ownerId || a.ownerId === f.ownerId) && (!f.status || a.status === f.status))
      .map((a) => ({ ...a, skills: a.skills.map((s) => ({ ...s })) }));
  }
  async setAgentStatus(id: string, status: AgentStatus, reason: string | null, at: Date) {
    const a = this.agents.find((x) => x.id === id)!;
    Object.assign(a, { status, statusReason: reason, updatedAt: at });
  }
  async createCredential(c: AgentCredential) {
    this.credentials.push({ ...c });
  }
  async listCredentials() {
    return this.credentials.map((c) => ({ ...c }));
  }
  async revokeCredential(id: string, at: Date) {
    this.credentials.find((c) => c.id === id)!.revokedAt = at;
  }
  async createApiKey(k: ApiKey) {
    this.apiKeys.push({ ...k });
  }
  async listApiKeys() {
    return this.apiKeys.map((k) => ({ ...k }));
  }
  async createSigningKey(k: SigningKey) {
    this.signingKeys.push({ ...k });
  }
  async listSigningKeys(purpose: string) {
    return this.signingKeys.filter((k) => k.purpose === purpose).map((k) => ({ ...k }));
  }
}
