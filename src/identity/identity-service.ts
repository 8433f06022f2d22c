import { createHash, randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import jwt from "jsonwebtoken";
import { ConflictError, InputError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { AgentFilter, IdentityStore } from "./identity-store";
import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, Organization, Role } from "./model";
import type { SigningKeys } from "./signing-keys";

export interface TokenSettings {
  issuer: string;
  audience: string;
  agentTokenTtlSeconds: number;
}

/** What the decision path needs about an agent, assembled from memory only. */
export interface AgentContext {
  agent: Agent;
  organization: Organization;
  owner: Human | null;
}

export const API_KEY_PREFIX = "claiim_";

export function newApiKeySecret(): { prefix: string; secret: string } {
  const prefix = randomBytes(6).toString("base64url");
  return { prefix, secret: `${API_KEY_PREFIX}${prefix}_${randomBytes(32).toString("base64url")}` };
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function notFound(what: string, ref: string): NotFoundError {
  return new NotFoundError(`${what}_not_found`, `${what.replace("_", " ")} ${ref} does not exist`);
}

/**
 * Organisations, humans, agents and their credentials. Every write goes to the store first and
 * then to the in-memory directory, which is what the decision path reads: a decision costs no
 * database read. The directory is loaded whole at start-up.
 *
 * WARNING: the directory is this process's. Run one CLAIIM process per database until the
 * directory learns of changes made by another process.
 */
export class IdentityService {
  private readonly orgs = new Map<string, Organization>();
  private readonly orgsBySlug = new Map<string, Organization>();
  private readonly humans = new Map<string, Human>();
  private readonly agents = new Map<string, Agent>();
  private readonly credentials = new Map<string, AgentCredential>();
  private readonly apiKeys = new Map<string, ApiKey>();

  constructor(
    private readonly store: IdentityStore,
    private readonly keys: SigningKeys,
    private readonly tokens: TokenSettings,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await this.keys.start();
    for (const o of await this.store.listOrganizations()) this.putOrg(o);
    for (const h of await this.store.listHumans()) this.humans.set(h.id, h);
    for (const a of await this.store.listAgents({})) this.agents.set(a.id, a);
    for (const c of await this.store.listCredentials()) this.credentials.set(c.id, c);
    for (const k of await this.store.listApiKeys()) this.apiKeys.set(k.secretHash, k);
  }

  // --- organisations and humans ---

  async createOrganization(input: { slug: string; name: string }): Promise<Organization> {
    if (this.orgsBySlug.has(input.slug)) throw new ConflictError("organization_exists", `organization ${input.slug} already exists`);
    const org: Organization = { id: randomUUID(), slug: input.slug, name: input.name, createdAt: new Date() };
    await this.store.createOrganization(org);
    this.putOrg(org);
    return org;
  }

  listOrganizations(): Organization[] {
    return [...this.orgs.values()];
  }

  organization(id: string): Organization | undefined {
    return this.orgs.get(id);
  }

  organizationBySlug(slug: string): Organization {
    const org = this.orgsBySlug.get(slug);
    if (!org) throw notFound("organization", slug);
    return org;
  }

  async createHuman(input: { organization: string; name: string; email: string }): Promise<Human> {
    const org = this.organizationBySlug(input.organization);
    const email = input.email.toLowerCase();
    if ([...this.humans.values()].some((h) => h.orgId === org.id && h.email === email)) {
      throw new ConflictError("human_exists", `a human with email ${email} already exists in ${org.slug}`);
    }
    const human: Human = { id: randomUUID(), orgId: org.id, name: input.name, email, status: "active", createdAt: new Date() };
    await this.store.createHuman(human);
    this.humans.set(human.id, human);
    return human;
  }

  listHumans(orgId?: string): Human[] {
    return [...this.humans.values()].filter((h) => !orgId || h.orgId === orgId);
  }

  human(id: string): Human {
    const h = this.humans.get(id);
    if (!h) throw notFound("human", id);
    return h;
  }

  // --- agents ---

  async registerAgent(input: {
    organization: string;
    name: string;
    description: string;
    owner: string;
    skills: { name: string; version: string }[];
  }): Promise<Agent> {
    const org = this.organizationBySlug(input.organization);
    const owner = this.resolveOwner(org, input.owner);
    if (owner.status !== "active") {
      throw new InputError("owner_inactive", `accountable human ${owner.email} is ${owner.status}; an agent needs an active accountable human`, [
        { path: "owner", message: "accountable human is not active" },
      ]);
    }
    const names = input.skills.map((s) => s.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new InputError("duplicate_skill", `skill ${dup} is declared twice`, [{ path: "skills", message: `duplicate skill ${dup}` }]);
    if ([...this.agents.values()].some((a) => a.orgId === org.id && a.name === input.name)) {
      throw new ConflictError("agent_exists", `an agent named ${input.name} already exists in ${org.slug}`);
    }
    const now = new Date();
    const agent: Agent = {
      id: randomUUID(),
      orgId: org.id,
      name: input.name,
      description: input.description,
      ownerId: owner.id,
      status: "active",
      statusReason: null,
      createdAt: now,
      updatedAt: now,
      skills: input.skills.map((s) => ({ name: s.name, version: s.version, registeredAt: now })),
    };
    await this.store.createAgent(agent);
    this.agents.set(agent.id, agent);
    this.logger.info("agent registered", { agent_id: agent.id, org: org.slug, owner_id: owner.id });
    return agent;
  }

  listAgents(filter: AgentFilter): Agent[] {
    return [...this.agents.values()].filter(
      (a) => (!filter.orgId || a.orgId === filter.orgId) && (!filter.ownerId || a.ownerId === filter.ownerId) && (!filter.status || a.status === filter.status),
    );
  }

  agent(id: string): Agent {
    const a = this.agents.get(id);
    if (!a) throw notFound("agent", id);
    return a;
  }

  async setAgentStatus(id: string, status: AgentStatus, reason: string | null): Promise<Agent> {
    const agent = this.agent(id);
    if (agent.status === "retired") throw new ConflictError("agent_retired", `agent ${agent.name} is retired`);
    const at = new Date();
    await this.store.setAgentStatus(id, status, reason, at);
    const updated = { ...agent, status, statusReason: reason, updatedAt: at };
    this.agents.set(id, updated);
    this.logger.info("agent status changed", { agent_id: id, status });
    return updated;
  }

  /** Memory only: this is on the decision path. */
  agentContext(agentId: string): AgentContext | null {
    const agent = this.agents.get(agentId);
    const organization = agent && this.orgs.get(agent.orgId);
    if (!agent || !organization) return null;
    return { agent, organization, owner: this.humans.get(agent.ownerId) ?? null };
  }

  // --- agent credentials ---

  async issueCredential(agentId: string, ttlSeconds?: number): Promise<{ credential: AgentCredential; token: string }> {
    const agent = this.agent(agentId);
    if (agent.status === "retired") throw new ConflictError("agent_retired", `agent ${agent.name} is retired`);
    const key = this.keys.current();
    const ttl = ttlSeconds ?? this.tokens.agentTokenTtlSeconds;
    const now = new Date();
    const credential: AgentCredential = {
      id: randomUUID(),
      agentId,
      kid: key.kid,
      createdAt: now,
      expiresAt: new Date(now.getTime() + ttl * 1000),
      revokedAt: null,
    };
    const token = jwt.sign({ org: agent.orgId, name: agent.name }, key.privateKey, {
      algorithm: key.alg,
      keyid: key.kid,
      issuer: this.tokens.issuer,
      audience: this.tokens.audience,
      subject: agentId,
      jwtid: credential.id,
      expiresIn: ttl,
    });
    await this.store.createCredential(credential);
    this.credentials.set(credential.id, credential);
    return { credential, token };
  }

  listCredentials(agentId: string): AgentCredential[] {
    this.agent(agentId);
    return [...this.credentials.values()].filter((c) => c.agentId === agentId);
  }

  async revokeCredential(agentId: string, credentialId: string): Promise<AgentCredential> {
    const credential = this.credentials.get(credentialId);
    if (!credential || credential.agentId !== agentId) throw notFound("credential", credentialId);
    if (credential.revokedAt) return credential;
    const at = new Date();
    await this.store.revokeCredential(credentialId, at);
    const revoked = { ...credential, revokedAt: at };
    this.credentials.set(credentialId, revoked);
    this.logger.info("agent credential revoked", { agent_id: agentId, credential_id: credentialId });
    return revoked;
  }

  credential(id: string): AgentCredential | undefined {
    return this.credentials.get(id);
  }

  // --- API keys ---

  async createApiKey(
    input: { name: string; role: Role; orgId: string | null; expiresAt: Date | null },
    secret: { prefix: string; secret: string } = newApiKeySecret(),
  ): Promise<{ key: ApiKey; secret: string }> {
    const key: ApiKey = {
      id: randomUUID(),
      name: input.name,
      prefix: secret.prefix,
      secretHash: hashSecret(secret.secret),
      role: input.role,
      orgId: input.orgId,
      createdAt: new Date(),
      expiresAt: input.expiresAt,
      revokedAt: null,
    };
    await this.store.createApiKey(key);
    this.apiKeys.set(key.secretHash, key);
    return { key, secret: secret.secret };
  }

  apiKeyBySecret(secret: string): ApiKey | undefined {
    return this.apiKeys.get(hashSecret(secret));
  }

  /**
   * On a database with no administrator key, creates one and writes it to a file readable only
   * by this user. Returns the file's path, or null when an administrator key already exists.
   */
  async ensureBootstrapAdmin(dataDir: string): Promise<string | null> {
    if ([...this.apiKeys.values()].some((k) => k.role === "admin" && !k.revokedAt)) return null;
    const secret = newApiKeySecret();
    const file = path.join(dataDir, "bootstrap-admin.token");
    // The file first: a start that dies between the two steps must not leave a key nobody holds.
    fs.mkdirSync(dataDir, { recursive: true });
    fs.rmSync(`${file}.tmp`, { force: true });
    fs.writeFileSync(`${file}.tmp`, `${secret.secret}\n`, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    await this.createApiKey({ name: "bootstrap administrator", role: "admin", orgId: null, expiresAt: null }, secret);
    return file;
  }

  jwks(): { keys: Record<string, string>[] } {
    return { keys: this.keys.jwks() };
  }

  private putOrg(org: Organization): void {
    this.orgs.set(org.id, org);
    this.orgsBySlug.set(org.slug, org);
  }

  /** An owner is named by id or by email, and must belong to the agent's organisation. */
  private resolveOwner(org: Organization, ref: string): Human {
    const human = ref.includes("@")
      ? [...this.humans.values()].find((h) => h.orgId === org.id && h.email === ref.toLowerCase())
      : this.humans.get(ref);
    if (!human || human.orgId !== org.id) {
      throw new InputError("owner_not_found", `accountable human ${ref} does not exist in organization ${org.slug}; register the human first`, [
        { path: "owner", message: "no such human in this organization" },
      ]);
    }
    return human;
  }
}
