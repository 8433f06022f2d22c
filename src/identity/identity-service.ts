import type { Names } from "../shared/names";
import { recordKeyCreation } from "../chron/key-events";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import jwt from "jsonwebtoken";
import type { Tx } from "../db/database";
import { newEvent, type EventContent } from "../chron/record";
import type { Recorder } from "../chron/chron-store";
import { ConflictError, InputError, NotAllowedError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { IdentityStore } from "./identity-store";
import { ALL_ORGANIZATIONS, SYSTEM, type Actor, type Role, type Scope } from "../shared/principal";
import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, Organization } from "./model";
import { generate, loadOrCreateKeys, type SigningKeys } from "../keys/signing-keys";

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

export interface AgentFilter {
  orgId?: string;
  ownerId?: string;
  status?: AgentStatus;
  skill?: string;
}

export const API_KEY_PREFIX = "claiim_";

export function newApiKeySecret(): { prefix: string; secret: string } {
  const prefix = randomBytes(6).toString("hex");
  return { prefix, secret: `${API_KEY_PREFIX}${prefix}_${randomBytes(32).toString("base64url")}` };
}

export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}

function notFound(what: "organization" | "human" | "agent" | "credential" | "api_key", ref: string): NotFoundError {
  return new NotFoundError(`${what}_not_found`, `${what.replace("_", " ")} ${ref} does not exist`);
}

// What Chron keeps of each kind of subject, before and after a change. Never a secret or its hash.
const agentState = (a: Agent) => ({
  name: a.name,
  description: a.description,
  owner_id: a.ownerId,
  status: a.status,
  status_reason: a.statusReason,
  skills: a.skills.map((s) => ({ name: s.name, version: s.version })),
});
const humanState = (h: Human) => ({ name: h.name, email: h.email, status: h.status });
const credentialState = (c: AgentCredential) => ({ agent_id: c.agentId, kid: c.kid, expires_at: c.expiresAt.toISOString(), revoked_at: c.revokedAt?.toISOString() ?? null });
const apiKeyState = (k: ApiKey) => ({ name: k.name, prefix: k.prefix, role: k.role, org_id: k.orgId, expires_at: k.expiresAt?.toISOString() ?? null, revoked_at: k.revokedAt?.toISOString() ?? null });

/**
 * Organisations, humans, agents, their credentials, and API keys. Every change is recorded in
 * Chron, with its actor and the state before and after, in the same transaction as the change;
 * then it is applied to the in-memory directory, which is what the decision path reads: a
 * decision costs no database read. Changes are serialised, so each one's "before" is exact.
 *
 * WARNING: the directory is this process's. Run one CLAIIM process per database until the
 * directory learns of changes made by another process.
 */
export class IdentityService implements Names {
  private readonly orgs = new Map<string, Organization>();
  private readonly orgsBySlug = new Map<string, Organization>();
  private readonly humans = new Map<string, Human>();
  private readonly agents = new Map<string, Agent>();
  private readonly credentials = new Map<string, AgentCredential>();
  private readonly apiKeys = new Map<string, ApiKey>();
  private readonly apiKeysById = new Map<string, ApiKey>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: IdentityStore,
    private readonly keys: SigningKeys,
    private readonly tokens: TokenSettings,
    private readonly record: Recorder,
    private readonly logger: Logger,
  ) {}

  async start(): Promise<void> {
    await loadOrCreateKeys(this.keys, this.store, recordKeyCreation(this.record));
    for (const o of await this.store.listOrganizations()) this.putOrg(o);
    for (const h of await this.store.listHumans()) this.humans.set(h.id, h);
    for (const a of await this.store.listAgents()) this.agents.set(a.id, a);
    for (const c of await this.store.listCredentials()) this.credentials.set(c.id, c);
    for (const k of await this.store.listApiKeys()) this.putApiKey(k);
  }

  // --- organisations ---

  createOrganization(input: { slug: string; name: string }, actor: Actor, scope: Scope): Promise<Organization> {
    return this.serialised(async () => {
      if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "a key confined to one organisation cannot create organisations");
      if (this.orgsBySlug.has(input.slug)) throw new ConflictError("organization_exists", `organization ${input.slug} already exists`);
      const org: Organization = { id: randomUUID(), slug: input.slug, name: input.name, createdAt: new Date() };
      await this.commit(this.event("organization.created", actor, { type: "organization", id: org.id, name: org.slug }, org, null, null, { slug: org.slug, name: org.name }), (tx) =>
        this.store.createOrganization(org, tx),
      );
      this.putOrg(org);
      return org;
    });
  }

  listOrganizations(scope: Scope): Organization[] {
    return [...this.orgs.values()].filter((o) => this.visible(scope, o.id));
  }

  organization(id: string): Organization | undefined {
    return this.orgs.get(id);
  }

  /** The organisation with this slug, if the scope may see it (else: not found, not forbidden). */
  organizationBySlug(slug: string, scope: Scope): Organization {
    const org = this.orgsBySlug.get(slug);
    if (!org || !this.visible(scope, org.id)) throw notFound("organization", slug);
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

  agentName(id: string): string | null {
    return this.agents.get(id)?.name ?? null;
  }

  humanEmail(id: string): string | null {
    return this.humans.get(id)?.email ?? null;
  }

  // --- humans ---

  createHuman(input: { organization: string; name: string; email: string }, actor: Actor, scope: Scope): Promise<Human> {
    return this.serialised(async () => {
      const org = this.organizationBySlug(input.organization, scope);
      const email = input.email.toLowerCase();
      if ([...this.humans.values()].some((h) => h.orgId === org.id && h.email === email)) {
        throw new ConflictError("human_exists", `a human with email ${email} already exists in ${org.slug}`);
      }
      const human: Human = { id: randomUUID(), orgId: org.id, name: input.name, email, status: "active", createdAt: new Date() };
      await this.commit(this.event("human.registered", actor, { type: "human", id: human.id, name: email }, org, null, null, humanState(human)), (tx) => this.store.saveHuman(human, tx));
      this.humans.set(human.id, human);
      return human;
    });
  }

  listHumans(scope: Scope, orgId?: string): Human[] {
    return [...this.humans.values()].filter((h) => this.visible(scope, h.orgId) && (!orgId || h.orgId === orgId));
  }

  human(id: string, scope: Scope): Human {
    const h = this.humans.get(id);
    if (!h || !this.visible(scope, h.orgId)) throw notFound("human", id);
    return h;
  }

  /**
   * A human leaves: they can no longer be accountable, so each of their active agents is suspended
   * in the same transaction, each with a record of its own, until someone takes it over.
   */
  deactivateHuman(id: string, reason: string, actor: Actor, scope: Scope): Promise<{ human: Human; suspended: Agent[] }> {
    return this.serialised(async () => {
      const before = this.human(id, scope);
      if (before.status === "deactivated") return { human: before, suspended: [] };
      const human: Human = { ...before, status: "deactivated" };
      const org = this.orgs.get(human.orgId)!;
      const now = new Date();
      const suspended = [...this.agents.values()]
        .filter((a) => a.ownerId === id && a.status === "active")
        .map((a) => ({ ...a, status: "suspended" as const, statusReason: `accountable human ${human.email} was deactivated`, updatedAt: now }));
      const events: EventContent[] = [
        this.event("human.deactivated", actor, { type: "human", id, name: human.email }, org, null, humanState(before), humanState(human), reason),
        ...suspended.map((a) =>
          this.event("agent.suspended", actor, { type: "agent", id: a.id, name: a.name }, org, { agent: a, owner: human }, agentState(this.agents.get(a.id)!), agentState(a), a.statusReason),
        ),
      ];
      await this.record(events, async (tx) => {
        await this.store.saveHuman(human, tx);
        for (const a of suspended) await this.store.saveAgent(a, tx);
      });
      this.humans.set(id, human);
      for (const a of suspended) this.agents.set(a.id, a);
      this.logger.info("human deactivated", { human_id: id, agents_suspended: suspended.length });
      return { human, suspended };
    });
  }

  reactivateHuman(id: string, reason: string, actor: Actor, scope: Scope): Promise<Human> {
    return this.serialised(async () => {
      const before = this.human(id, scope);
      if (before.status === "active") return before;
      const human: Human = { ...before, status: "active" };
      await this.commit(
        this.event("human.reactivated", actor, { type: "human", id, name: human.email }, this.orgs.get(human.orgId)!, null, humanState(before), humanState(human), reason),
        (tx) => this.store.saveHuman(human, tx),
      );
      this.humans.set(id, human);
      return human;
    });
  }

  // --- agents ---

  registerAgent(
    input: { organization: string; name: string; description: string; owner: string; skills: { name: string; version: string }[] },
    actor: Actor,
    scope: Scope,
  ): Promise<Agent> {
    return this.serialised(async () => {
      const org = this.organizationBySlug(input.organization, scope);
      const owner = this.activeOwner(org, input.owner);
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
        skills: this.skills(input.skills, [], now),
      };
      await this.commit(this.agentEvent("agent.registered", actor, agent, owner, null, null), (tx) => this.store.saveAgent(agent, tx));
      this.agents.set(agent.id, agent);
      this.logger.info("agent registered", { agent_id: agent.id, org: org.slug, owner_id: owner.id });
      return agent;
    });
  }

  listAgents(scope: Scope, filter: AgentFilter): Agent[] {
    return [...this.agents.values()].filter(
      (a) =>
        this.visible(scope, a.orgId) &&
        (!filter.orgId || a.orgId === filter.orgId) &&
        (!filter.ownerId || a.ownerId === filter.ownerId) &&
        (!filter.status || a.status === filter.status) &&
        (!filter.skill || a.skills.some((s) => s.name === filter.skill)),
    );
  }

  agent(id: string, scope: Scope): Agent {
    const a = this.agents.get(id);
    if (!a || !this.visible(scope, a.orgId)) throw notFound("agent", id);
    return a;
  }

  /** Description and skills. A skill's new version is registered now; an unchanged one keeps its date. */
  updateAgent(id: string, input: { description?: string; skills?: { name: string; version: string }[] }, reason: string | null, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serialised(async () => {
      const before = this.liveAgent(id, scope);
      const now = new Date();
      const agent: Agent = {
        ...before,
        description: input.description ?? before.description,
        skills: input.skills ? this.skills(input.skills, before.skills, now) : before.skills,
        updatedAt: now,
      };
      return this.saveAgentChange("agent.updated", actor, before, agent, reason);
    });
  }

  suspendAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serialised(async () => {
      const before = this.liveAgent(id, scope);
      return this.saveAgentChange("agent.suspended", actor, before, { ...before, status: "suspended", statusReason: reason, updatedAt: new Date() }, reason);
    });
  }

  /** Only with an active accountable human: no agent acts without one. */
  reactivateAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serialised(async () => {
      const before = this.liveAgent(id, scope);
      const owner = this.humans.get(before.ownerId);
      if (!owner || owner.status !== "active") {
        throw new ConflictError("owner_inactive", `agent ${before.name}'s accountable human is not active; transfer the agent to an active human first`);
      }
      return this.saveAgentChange("agent.reactivated", actor, before, { ...before, status: "active", statusReason: null, updatedAt: new Date() }, reason);
    });
  }

  /** Retirement is final: the agent keeps its history but never acts again. */
  retireAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serialised(async () => {
      const before = this.liveAgent(id, scope);
      return this.saveAgentChange("agent.retired", actor, before, { ...before, status: "retired", statusReason: reason, updatedAt: new Date() }, reason);
    });
  }

  transferAgent(id: string, newOwner: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serialised(async () => {
      const before = this.liveAgent(id, scope);
      const owner = this.activeOwner(this.orgs.get(before.orgId)!, newOwner);
      if (owner.id === before.ownerId) throw new ConflictError("owner_unchanged", `${owner.email} is already accountable for ${before.name}`);
      return this.saveAgentChange("agent.owner_changed", actor, before, { ...before, ownerId: owner.id, updatedAt: new Date() }, reason);
    });
  }

  /** Memory only: this is on the decision path. */
  agentContext(agentId: string): AgentContext | null {
    const agent = this.agents.get(agentId);
    const organization = agent && this.orgs.get(agent.orgId);
    if (!agent || !organization) return null;
    return { agent, organization, owner: this.humans.get(agent.ownerId) ?? null };
  }

  // --- agent credentials ---

  issueCredential(agentId: string, ttlSeconds: number | undefined, actor: Actor, scope: Scope): Promise<{ credential: AgentCredential; token: string }> {
    return this.serialised(async () => {
      const agent = this.liveAgent(agentId, scope);
      const key = this.keys.current();
      const ttl = ttlSeconds ?? this.tokens.agentTokenTtlSeconds;
      const now = new Date();
      const credential: AgentCredential = { id: randomUUID(), agentId, kid: key.kid, createdAt: now, expiresAt: new Date(now.getTime() + ttl * 1000), revokedAt: null };
      const token = jwt.sign({ org: agent.orgId, name: agent.name }, key.privateKey, {
        algorithm: key.alg,
        keyid: key.kid,
        issuer: this.tokens.issuer,
        audience: this.tokens.audience,
        subject: agentId,
        jwtid: credential.id,
        expiresIn: ttl,
      });
      await this.commit(this.credentialEvent("credential.issued", actor, agent, null, credential, null), (tx) => this.store.saveCredential(credential, tx));
      this.credentials.set(credential.id, credential);
      return { credential, token };
    });
  }

  listCredentials(agentId: string, scope: Scope): AgentCredential[] {
    this.agent(agentId, scope);
    return [...this.credentials.values()].filter((c) => c.agentId === agentId);
  }

  revokeCredential(agentId: string, credentialId: string, actor: Actor, scope: Scope): Promise<AgentCredential> {
    return this.serialised(async () => {
      const agent = this.agent(agentId, scope);
      const before = this.credentials.get(credentialId);
      if (!before || before.agentId !== agentId) throw notFound("credential", credentialId);
      if (before.revokedAt) return before;
      const revoked = { ...before, revokedAt: new Date() };
      await this.commit(this.credentialEvent("credential.revoked", actor, agent, before, revoked, null), (tx) => this.store.saveCredential(revoked, tx));
      this.credentials.set(credentialId, revoked);
      this.logger.info("agent credential revoked", { agent_id: agentId, credential_id: credentialId });
      return revoked;
    });
  }

  credential(id: string): AgentCredential | undefined {
    return this.credentials.get(id);
  }

  // --- signing keys ---

  /**
   * A new signing key takes over now; the previous one keeps verifying, and stays in the JWKS,
   * for `overlapSeconds`, so that the tokens it signed go on working until then.
   */
  rotateSigningKey(overlapSeconds: number, reason: string | null, actor: Actor, scope: Scope): Promise<{ kid: string; previous: { kid: string; retires_at: string } }> {
    return this.serialised(async () => {
      if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "signing keys serve every organisation; only a key not confined to one may rotate them");
      const stored = await this.store.listSigningKeys(this.keys.purpose);
      const old = stored.filter((k) => k.retiredAt === null);
      const retiresAt = new Date(Date.now() + overlapSeconds * 1000);
      const retiring = old.map((k) => ({ ...k, retiredAt: retiresAt }));
      const fresh = generate(this.keys.purpose);
      await this.commit(
        this.event(
          "signing_key.rotated",
          actor,
          { type: "signing_key", id: fresh.kid, name: fresh.purpose },
          null,
          null,
          { signing_kid: old.map((k) => k.kid).pop() ?? null },
          { signing_kid: fresh.kid, retiring: retiring.map((k) => ({ kid: k.kid, retires_at: retiresAt.toISOString() })) },
          reason,
        ),
        async (tx) => {
          for (const k of retiring) await this.store.saveSigningKey(k, tx);
          await this.store.saveSigningKey(fresh, tx);
        },
      );
      this.keys.load([...stored.filter((k) => k.retiredAt !== null), ...retiring, fresh]);
      this.logger.info("signing key rotated", { kid: fresh.kid, previous: old.map((k) => k.kid), retires_at: retiresAt.toISOString() });
      return { kid: fresh.kid, previous: { kid: old.map((k) => k.kid).pop() ?? "", retires_at: retiresAt.toISOString() } };
    });
  }

  // --- API keys ---

  /**
   * A key of `role`, confined to one organisation or (for a caller that spans all) to none. A
   * caller confined to an organisation can only create keys confined to it.
   */
  createApiKey(
    input: { name: string; role: Role; organization: string | null; expiresAt: Date | null },
    actor: Actor,
    scope: Scope,
    secret: { prefix: string; secret: string } = newApiKeySecret(),
  ): Promise<{ key: ApiKey; secret: string }> {
    return this.serialised(async () => {
      const org = input.organization ? this.organizationBySlug(input.organization, scope) : null;
      if (scope.orgId !== null && !org) throw new NotAllowedError("organization_scope", "a key confined to one organisation can only create keys confined to it");
      // An approver answers for one organisation's humans: its key is always confined to it.
      if (input.role === "approver" && !org) {
        throw new InputError("approver_key_needs_organization", "an approver key must be confined to one organisation", [{ path: "organization", message: "required for role approver" }]);
      }
      if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) {
        throw new InputError("expiry_in_past", "expires_at must be in the future", [{ path: "expires_at", message: "in the past" }]);
      }
      const key: ApiKey = {
        id: randomUUID(),
        name: input.name,
        prefix: secret.prefix,
        secretHash: hashSecret(secret.secret),
        role: input.role,
        orgId: org?.id ?? null,
        createdAt: new Date(),
        expiresAt: input.expiresAt,
        revokedAt: null,
      };
      await this.commit(this.event("api_key.created", actor, { type: "api_key", id: key.id, name: key.name }, org, null, null, apiKeyState(key)), (tx) => this.store.saveApiKey(key, tx));
      this.putApiKey(key);
      return { key, secret: secret.secret };
    });
  }

  listApiKeys(scope: Scope): ApiKey[] {
    return [...this.apiKeysById.values()].filter((k) => scope.orgId === null || k.orgId === scope.orgId);
  }

  revokeApiKey(id: string, actor: Actor, scope: Scope): Promise<ApiKey> {
    return this.serialised(async () => {
      const before = this.apiKeysById.get(id);
      if (!before || (scope.orgId !== null && before.orgId !== scope.orgId)) throw notFound("api_key", id);
      if (before.revokedAt) return before;
      const key = { ...before, revokedAt: new Date() };
      const org = key.orgId ? this.orgs.get(key.orgId)! : null;
      await this.commit(this.event("api_key.revoked", actor, { type: "api_key", id, name: key.name }, org, null, apiKeyState(before), apiKeyState(key)), (tx) => this.store.saveApiKey(key, tx));
      this.putApiKey(key);
      return key;
    });
  }

  apiKeyBySecret(secret: string): ApiKey | undefined {
    return this.apiKeys.get(hashSecret(secret));
  }

  /**
   * On a database with no administrator key, creates one and writes it to a file readable only
   * by this user. Returns the file's path, or null when an administrator key already exists.
   */
  async ensureBootstrapAdmin(dataDir: string): Promise<string | null> {
    if ([...this.apiKeysById.values()].some((k) => k.role === "admin" && !k.revokedAt)) return null;
    const secret = newApiKeySecret();
    const file = path.join(dataDir, "bootstrap-admin.token");
    // The file first: a start that dies between the two steps must not leave a key nobody holds.
    fs.mkdirSync(dataDir, { recursive: true });
    fs.rmSync(`${file}.tmp`, { force: true });
    fs.writeFileSync(`${file}.tmp`, `${secret.secret}\n`, { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    await this.createApiKey({ name: "bootstrap administrator", role: "admin", organization: null, expiresAt: null }, SYSTEM, ALL_ORGANIZATIONS, secret);
    return file;
  }

  jwks(): { keys: Record<string, string>[] } {
    return { keys: this.keys.jwks() };
  }

  // --- internals ---

  private visible(scope: Scope, orgId: string): boolean {
    return scope.orgId === null || scope.orgId === orgId;
  }

  private putOrg(org: Organization): void {
    this.orgs.set(org.id, org);
    this.orgsBySlug.set(org.slug, org);
  }

  private putApiKey(key: ApiKey): void {
    this.apiKeys.set(key.secretHash, key);
    this.apiKeysById.set(key.id, key);
  }

  /** An agent that can still change: retired agents are history. */
  private liveAgent(id: string, scope: Scope): Agent {
    const agent = this.agent(id, scope);
    if (agent.status === "retired") throw new ConflictError("agent_retired", `agent ${agent.name} is retired`);
    return agent;
  }

  /** An owner is named by id or by email, must belong to the agent's organisation, and must be active. */
  private activeOwner(org: Organization, ref: string): Human {
    const human = ref.includes("@")
      ? [...this.humans.values()].find((h) => h.orgId === org.id && h.email === ref.toLowerCase())
      : this.humans.get(ref);
    if (!human || human.orgId !== org.id) {
      throw new InputError("owner_not_found", `accountable human ${ref} does not exist in organization ${org.slug}; register the human first`, [
        { path: "owner", message: "no such human in this organization" },
      ]);
    }
    if (human.status !== "active") {
      throw new ConflictError("owner_inactive", `accountable human ${human.email} is ${human.status}; an agent needs an active accountable human`, { field: "owner" });
    }
    return human;
  }

  private skills(requested: { name: string; version: string }[], current: Agent["skills"], now: Date): Agent["skills"] {
    const names = requested.map((s) => s.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new InputError("duplicate_skill", `skill ${dup} is declared twice`, [{ path: "skills", message: `duplicate skill ${dup}` }]);
    return requested
      .map((s) => {
        const same = current.find((c) => c.name === s.name && c.version === s.version);
        return { name: s.name, version: s.version, registeredAt: same?.registeredAt ?? now };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  private async saveAgentChange(type: string, actor: Actor, before: Agent, after: Agent, reason: string | null): Promise<Agent> {
    const owner = this.humans.get(after.ownerId)!;
    await this.commit(this.agentEvent(type, actor, after, owner, before, reason), (tx) => this.store.saveAgent(after, tx));
    this.agents.set(after.id, after);
    this.logger.info("agent changed", { agent_id: after.id, change: type });
    return after;
  }

  private commit(event: EventContent, effect: (tx: Tx) => Promise<void>): Promise<unknown> {
    return this.record([event], effect);
  }

  private agentEvent(type: string, actor: Actor, agent: Agent, owner: Human, before: Agent | null, reason: string | null): EventContent {
    return this.event(type, actor, { type: "agent", id: agent.id, name: agent.name }, this.orgs.get(agent.orgId)!, { agent, owner }, before && agentState(before), agentState(agent), reason);
  }

  private credentialEvent(type: string, actor: Actor, agent: Agent, before: AgentCredential | null, after: AgentCredential, reason: string | null): EventContent {
    const owner = this.humans.get(agent.ownerId) ?? null;
    return this.event(type, actor, { type: "credential", id: after.id, name: agent.name }, this.orgs.get(agent.orgId)!, { agent, owner }, before && credentialState(before), credentialState(after), reason);
  }

  private event(
    type: string,
    actor: Actor,
    subject: EventContent["subject"],
    org: Organization | null,
    about: { agent: Agent; owner: Human | null } | null,
    before: unknown,
    after: unknown,
    reason: string | null = null,
  ): EventContent {
    return newEvent({
      type,
      actor,
      subject,
      organization: org ? { id: org.id, slug: org.slug } : null,
      agent: about ? { id: about.agent.id, name: about.agent.name, status: about.agent.status } : null,
      accountable_human: about?.owner ? { id: about.owner.id, name: about.owner.name, email: about.owner.email, status: about.owner.status } : null,
      reason,
      before,
      after,
    });
  }

  private serialised<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
