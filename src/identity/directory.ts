import { NotFoundError } from "../lib/errors";
import type { Names } from "../shared/names";
import type { Scope } from "../shared/principal";
import type { IdentityStore } from "./identity-store";
import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, Organization } from "./model";
import { hashSecret } from "./secrets";

/** What the decision path needs about an agent, assembled from memory only. */
export interface AgentContext {
  agent: Agent;
  organization: Organization;
  owner: Human | null;
}

export interface AgentFilter {
  orgId?: string;
  ownerId?: string;
  status?: AgentStatus;
  skill?: string;
}

export function notFound(what: "organization" | "human" | "agent" | "credential" | "api_key", ref: string): NotFoundError {
  return new NotFoundError(`${what}_not_found`, `${what.replace("_", " ")} ${ref} does not exist`);
}

/**
 * The identity read model: organisations, humans, agents, agent credentials and API keys, held in
 * memory, loaded from the store at start and updated by the services after each change has
 * committed with its Chron record. The decision path and authentication read only this: a
 * decision costs no database read. Lookups honour the caller's scope: what a confined caller may
 * not see does not exist for it (not found, never forbidden).
 *
 * WARNING: the directory is this process's. Changes made by another CLAIIM process on the same
 * database reach it through their Chron events (IdentityFollower), within the follower's bound;
 * past it, nothing is answered from the directory (503 state_stale).
 */
export class IdentityDirectory implements Names {
  private readonly orgs = new Map<string, Organization>();
  private readonly orgsBySlug = new Map<string, Organization>();
  private readonly humans = new Map<string, Human>();
  private readonly agents = new Map<string, Agent>();
  private readonly credentials = new Map<string, AgentCredential>();
  private readonly apiKeys = new Map<string, ApiKey>();
  private readonly apiKeysById = new Map<string, ApiKey>();

  async load(store: IdentityStore): Promise<void> {
    for (const o of await store.listOrganizations()) this.putOrganization(o);
    for (const h of await store.listHumans()) this.putHuman(h);
    for (const a of await store.listAgents()) this.putAgent(a);
    for (const c of await store.listCredentials()) this.putCredential(c);
    for (const k of await store.listApiKeys()) this.putApiKey(k);
  }

  // --- what committed changes apply ---

  putOrganization(org: Organization): void {
    this.orgs.set(org.id, org);
    this.orgsBySlug.set(org.slug, org);
  }

  putHuman(human: Human): void {
    this.humans.set(human.id, human);
  }

  putAgent(agent: Agent): void {
    this.agents.set(agent.id, agent);
  }

  putCredential(credential: AgentCredential): void {
    this.credentials.set(credential.id, credential);
  }

  putApiKey(key: ApiKey): void {
    this.apiKeys.set(key.secretHash, key);
    this.apiKeysById.set(key.id, key);
  }

  // --- organisations ---

  listOrganizations(scope: Scope): Organization[] {
    return [...this.orgs.values()].filter((o) => visible(scope, o.id));
  }

  organization(id: string): Organization | undefined {
    return this.orgs.get(id);
  }

  hasOrganizationSlug(slug: string): boolean {
    return this.orgsBySlug.has(slug);
  }

  /** The organisation with this slug, if the scope may see it (else: not found, not forbidden). */
  organizationBySlug(slug: string, scope: Scope): Organization {
    const org = this.orgsBySlug.get(slug);
    if (!org || !visible(scope, org.id)) throw notFound("organization", slug);
    return org;
  }

  /**
   * The organisation a request is about: the one it names (not found unless the scope may see
   * it), else the one the caller is confined to, else none (every organisation).
   */
  organizationFilter(scope: Scope, slug?: string): string | undefined {
    return slug ? this.organizationBySlug(slug, scope).id : (scope.orgId ?? undefined);
  }

  organizationSlug(id: string): string | undefined {
    return this.orgs.get(id)?.slug;
  }

  // --- humans ---

  listHumans(scope: Scope, orgId?: string): Human[] {
    return [...this.humans.values()].filter((h) => visible(scope, h.orgId) && (!orgId || h.orgId === orgId));
  }

  human(id: string, scope: Scope): Human {
    const h = this.humans.get(id);
    if (!h || !visible(scope, h.orgId)) throw notFound("human", id);
    return h;
  }

  /** A human of this organisation named by id or by e-mail, whatever their status. */
  humanInOrganization(orgId: string, ref: string): Human | undefined {
    const human = ref.includes("@") ? [...this.humans.values()].find((h) => h.orgId === orgId && h.email === ref.toLowerCase()) : this.humans.get(ref);
    return human?.orgId === orgId ? human : undefined;
  }

  humanEmail(id: string): string | null {
    return this.humans.get(id)?.email ?? null;
  }

  // --- agents ---

  listAgents(scope: Scope, filter: AgentFilter): Agent[] {
    return [...this.agents.values()].filter(
      (a) =>
        visible(scope, a.orgId) &&
        (!filter.orgId || a.orgId === filter.orgId) &&
        (!filter.ownerId || a.ownerId === filter.ownerId) &&
        (!filter.status || a.status === filter.status) &&
        (!filter.skill || a.skills.some((s) => s.name === filter.skill)),
    );
  }

  agent(id: string, scope: Scope): Agent {
    const a = this.agents.get(id);
    if (!a || !visible(scope, a.orgId)) throw notFound("agent", id);
    return a;
  }

  agentName(id: string): string | null {
    return this.agents.get(id)?.name ?? null;
  }

  /** Memory only: this is on the decision path. */
  agentContext(agentId: string): AgentContext | null {
    const agent = this.agents.get(agentId);
    const organization = agent && this.orgs.get(agent.orgId);
    if (!agent || !organization) return null;
    return { agent, organization, owner: this.humans.get(agent.ownerId) ?? null };
  }

  // --- credentials and keys ---

  listCredentials(agentId: string, scope: Scope): AgentCredential[] {
    this.agent(agentId, scope);
    return [...this.credentials.values()].filter((c) => c.agentId === agentId);
  }

  credential(id: string): AgentCredential | undefined {
    return this.credentials.get(id);
  }

  listApiKeys(scope: Scope): ApiKey[] {
    return [...this.apiKeysById.values()].filter((k) => scope.orgId === null || k.orgId === scope.orgId);
  }

  apiKey(id: string): ApiKey | undefined {
    return this.apiKeysById.get(id);
  }

  apiKeyBySecret(secret: string): ApiKey | undefined {
    return this.apiKeys.get(hashSecret(secret));
  }
}

function visible(scope: Scope, orgId: string): boolean {
  return scope.orgId === null || scope.orgId === orgId;
}
