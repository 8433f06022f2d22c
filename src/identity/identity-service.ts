import { randomUUID } from "node:crypto";
import type { Tx } from "../db/database";
import type { Recorder } from "../chron/chron-store";
import type { EventContent } from "../chron/record";
import { ConflictError, InputError, NotAllowedError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import type { Serial } from "../lib/serial";
import type { Actor, Scope } from "../shared/principal";
import type { IdentityDirectory } from "./directory";
import { agentState, humanState, identityEvent } from "./events";
import type { IdentityStore } from "./identity-store";
import type { Agent, Human, Organization } from "./model";

export type { AgentContext, AgentFilter } from "./directory";

/**
 * Organisations, the humans accountable for agents, and the agents' lifecycle. Every change is
 * recorded in Chron, with its actor and the state before and after, in the same transaction as
 * the change; then it is applied to the directory. Changes go one at a time (through the serial
 * queue shared with credentials, API keys and OAuth clients), so each one's "before" is exact.
 */
export class IdentityService {
  constructor(
    readonly directory: IdentityDirectory,
    private readonly store: IdentityStore,
    private readonly record: Recorder,
    private readonly logger: Logger,
    private readonly serial: Serial,
  ) {}

  // --- organisations ---

  createOrganization(input: { slug: string; name: string }, actor: Actor, scope: Scope): Promise<Organization> {
    return this.serial.run(async () => {
      if (scope.orgId !== null) throw new NotAllowedError("organization_scope", "a key confined to one organisation cannot create organisations");
      if (this.directory.hasOrganizationSlug(input.slug)) throw new ConflictError("organization_exists", `organization ${input.slug} already exists`);
      const org: Organization = { id: randomUUID(), slug: input.slug, name: input.name, createdAt: new Date() };
      await this.commit(identityEvent("organization.created", actor, { type: "organization", id: org.id, name: org.slug }, org, null, null, { slug: org.slug, name: org.name }), (tx) =>
        this.store.createOrganization(org, tx),
      );
      this.directory.putOrganization(org);
      return org;
    });
  }

  // --- humans ---

  createHuman(input: { organization: string; name: string; email: string }, actor: Actor, scope: Scope): Promise<Human> {
    return this.serial.run(async () => {
      const org = this.directory.organizationBySlug(input.organization, scope);
      const email = input.email.toLowerCase();
      if (this.directory.humanInOrganization(org.id, email)) throw new ConflictError("human_exists", `a human with email ${email} already exists in ${org.slug}`);
      const human: Human = { id: randomUUID(), orgId: org.id, name: input.name, email, status: "active", createdAt: new Date() };
      await this.commit(identityEvent("human.registered", actor, { type: "human", id: human.id, name: email }, org, null, null, humanState(human)), (tx) => this.store.saveHuman(human, tx));
      this.directory.putHuman(human);
      return human;
    });
  }

  /**
   * A human leaves: they can no longer be accountable, so each of their active agents is suspended
   * in the same transaction, each with a record of its own, until someone takes it over.
   */
  deactivateHuman(id: string, reason: string, actor: Actor, scope: Scope): Promise<{ human: Human; suspended: Agent[] }> {
    return this.serial.run(async () => {
      const before = this.directory.human(id, scope);
      if (before.status === "deactivated") return { human: before, suspended: [] };
      const human: Human = { ...before, status: "deactivated" };
      const org = this.organizationOf(human.orgId);
      const now = new Date();
      const owned = this.directory.listAgents({ orgId: null }, { ownerId: id, status: "active" });
      const suspended = owned.map((a) => ({ ...a, status: "suspended" as const, statusReason: `accountable human ${human.email} was deactivated`, updatedAt: now }));
      const events: EventContent[] = [
        identityEvent("human.deactivated", actor, { type: "human", id, name: human.email }, org, null, humanState(before), humanState(human), reason),
        ...suspended.map((a, i) => identityEvent("agent.suspended", actor, { type: "agent", id: a.id, name: a.name }, org, { agent: a, owner: human }, agentState(owned[i]), agentState(a), a.statusReason)),
      ];
      await this.record(events, async (tx) => {
        await this.store.saveHuman(human, tx);
        for (const a of suspended) await this.store.saveAgent(a, tx);
      });
      this.directory.putHuman(human);
      for (const a of suspended) this.directory.putAgent(a);
      this.logger.info("human deactivated", { human_id: id, agents_suspended: suspended.length });
      return { human, suspended };
    });
  }

  reactivateHuman(id: string, reason: string, actor: Actor, scope: Scope): Promise<Human> {
    return this.serial.run(async () => {
      const before = this.directory.human(id, scope);
      if (before.status === "active") return before;
      const human: Human = { ...before, status: "active" };
      await this.commit(
        identityEvent("human.reactivated", actor, { type: "human", id, name: human.email }, this.organizationOf(human.orgId), null, humanState(before), humanState(human), reason),
        (tx) => this.store.saveHuman(human, tx),
      );
      this.directory.putHuman(human);
      return human;
    });
  }

  // --- agents ---

  registerAgent(
    input: { organization: string; name: string; description: string; owner: string; skills: { name: string; version: string }[] },
    actor: Actor,
    scope: Scope,
  ): Promise<Agent> {
    return this.serial.run(async () => {
      const org = this.directory.organizationBySlug(input.organization, scope);
      const owner = this.activeOwner(org, input.owner);
      if (this.directory.listAgents({ orgId: null }, { orgId: org.id }).some((a) => a.name === input.name)) {
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
        skills: skillsOf(input.skills, [], now),
      };
      await this.commit(this.agentEvent("agent.registered", actor, agent, owner, null, null), (tx) => this.store.saveAgent(agent, tx));
      this.directory.putAgent(agent);
      this.logger.info("agent registered", { agent_id: agent.id, org: org.slug, owner_id: owner.id });
      return agent;
    });
  }

  /** Description and skills. A skill's new version is registered now; an unchanged one keeps its date. */
  updateAgent(id: string, input: { description?: string; skills?: { name: string; version: string }[] }, reason: string | null, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serial.run(async () => {
      const before = this.liveAgent(id, scope);
      const now = new Date();
      const agent: Agent = {
        ...before,
        description: input.description ?? before.description,
        skills: input.skills ? skillsOf(input.skills, before.skills, now) : before.skills,
        updatedAt: now,
      };
      return this.saveAgentChange("agent.updated", actor, before, agent, reason);
    });
  }

  suspendAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serial.run(async () => {
      const before = this.liveAgent(id, scope);
      return this.saveAgentChange("agent.suspended", actor, before, { ...before, status: "suspended", statusReason: reason, updatedAt: new Date() }, reason);
    });
  }

  /** Only with an active accountable human: no agent acts without one. */
  reactivateAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serial.run(async () => {
      const before = this.liveAgent(id, scope);
      const owner = this.directory.agentContext(id)?.owner;
      if (!owner || owner.status !== "active") {
        throw new ConflictError("owner_inactive", `agent ${before.name}'s accountable human is not active; transfer the agent to an active human first`);
      }
      return this.saveAgentChange("agent.reactivated", actor, before, { ...before, status: "active", statusReason: null, updatedAt: new Date() }, reason);
    });
  }

  /** Retirement is final: the agent keeps its history but never acts again. */
  retireAgent(id: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serial.run(async () => {
      const before = this.liveAgent(id, scope);
      return this.saveAgentChange("agent.retired", actor, before, { ...before, status: "retired", statusReason: reason, updatedAt: new Date() }, reason);
    });
  }

  transferAgent(id: string, newOwner: string, reason: string, actor: Actor, scope: Scope): Promise<Agent> {
    return this.serial.run(async () => {
      const before = this.liveAgent(id, scope);
      const owner = this.activeOwner(this.organizationOf(before.orgId), newOwner);
      if (owner.id === before.ownerId) throw new ConflictError("owner_unchanged", `${owner.email} is already accountable for ${before.name}`);
      return this.saveAgentChange("agent.owner_changed", actor, before, { ...before, ownerId: owner.id, updatedAt: new Date() }, reason);
    });
  }

  /** An agent that can still change: retired agents are history. */
  liveAgent(id: string, scope: Scope): Agent {
    const agent = this.directory.agent(id, scope);
    if (agent.status === "retired") throw new ConflictError("agent_retired", `agent ${agent.name} is retired`);
    return agent;
  }

  // --- internals ---

  private organizationOf(orgId: string): Organization {
    const org = this.directory.organization(orgId);
    if (!org) throw new Error(`the directory holds no organisation ${orgId}`);
    return org;
  }

  /** An owner is named by id or by email, must belong to the agent's organisation, and must be active. */
  private activeOwner(org: Organization, ref: string): Human {
    const human = this.directory.humanInOrganization(org.id, ref);
    if (!human) {
      throw new InputError("owner_not_found", `accountable human ${ref} does not exist in organization ${org.slug}; register the human first`, [
        { path: "owner", message: "no such human in this organization" },
      ]);
    }
    if (human.status !== "active") {
      throw new ConflictError("owner_inactive", `accountable human ${human.email} is ${human.status}; an agent needs an active accountable human`, { field: "owner" });
    }
    return human;
  }

  private async saveAgentChange(type: string, actor: Actor, before: Agent, after: Agent, reason: string | null): Promise<Agent> {
    const owner = this.directory.human(after.ownerId, { orgId: null });
    await this.commit(this.agentEvent(type, actor, after, owner, before, reason), (tx) => this.store.saveAgent(after, tx));
    this.directory.putAgent(after);
    this.logger.info("agent changed", { agent_id: after.id, change: type });
    return after;
  }

  private commit(event: EventContent, effect: (tx: Tx) => Promise<void>): Promise<unknown> {
    return this.record([event], effect);
  }

  private agentEvent(type: string, actor: Actor, agent: Agent, owner: Human, before: Agent | null, reason: string | null): EventContent {
    return identityEvent(type, actor, { type: "agent", id: agent.id, name: agent.name }, this.organizationOf(agent.orgId), { agent, owner }, before && agentState(before), agentState(agent), reason);
  }
}

/** The skills requested, each with when it was registered: an unchanged skill keeps its date. */
function skillsOf(requested: { name: string; version: string }[], current: Agent["skills"], now: Date): Agent["skills"] {
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
