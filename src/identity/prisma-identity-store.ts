import type { Prisma } from "../db/database";
import { ConflictError } from "../lib/errors";
import type { AgentFilter, IdentityStore } from "./identity-store";
import type { Agent, AgentCredential, AgentStatus, ApiKey, Human, HumanStatus, Organization, Role, SigningKey } from "./model";

function conflictOn<T>(code: string, message: string) {
  return (err: unknown): T => {
    if ((err as { code?: string }).code === "P2002") throw new ConflictError(code, message);
    throw err;
  };
}

type AgentRow = Omit<Agent, "status" | "skills"> & { status: string; skills: { name: string; version: string; registeredAt: Date }[] };

function toAgent(row: AgentRow): Agent {
  return { ...row, status: row.status as AgentStatus, skills: row.skills.map((s) => ({ name: s.name, version: s.version, registeredAt: s.registeredAt })) };
}

export class PrismaIdentityStore implements IdentityStore {
  constructor(private readonly prisma: Prisma) {}

  async createOrganization(org: Organization): Promise<void> {
    await this.prisma.organization.create({ data: org }).catch(conflictOn("organization_exists", `organization ${org.slug} already exists`));
  }

  async listOrganizations(): Promise<Organization[]> {
    return this.prisma.organization.findMany({ orderBy: { createdAt: "asc" }, select: { id: true, slug: true, name: true, createdAt: true } });
  }

  async createHuman(human: Human): Promise<void> {
    await this.prisma.human.create({ data: human }).catch(conflictOn("human_exists", `a human with email ${human.email} already exists in this organisation`));
  }

  async listHumans(orgId?: string): Promise<Human[]> {
    const rows = await this.prisma.human.findMany({ where: orgId ? { orgId } : {}, orderBy: { createdAt: "asc" } });
    return rows.map((r) => ({ ...r, status: r.status as HumanStatus }));
  }

  async createAgent(agent: Agent): Promise<void> {
    const { skills, ...rest } = agent;
    await this.prisma.agent
      .create({ data: { ...rest, skills: { create: skills } } })
      .catch(conflictOn("agent_exists", `an agent named ${agent.name} already exists in this organisation`));
  }

  async listAgents(filter: AgentFilter): Promise<Agent[]> {
    const rows = await this.prisma.agent.findMany({
      where: { orgId: filter.orgId, ownerId: filter.ownerId, status: filter.status },
      include: { skills: { orderBy: { name: "asc" } } },
      orderBy: { createdAt: "asc" },
    });
    return rows.map(toAgent);
  }

  async setAgentStatus(id: string, status: AgentStatus, reason: string | null, at: Date): Promise<void> {
    await this.prisma.agent.update({ where: { id }, data: { status, statusReason: reason, updatedAt: at } });
  }

  async createCredential(credential: AgentCredential): Promise<void> {
    await this.prisma.agentCredential.create({ data: credential });
  }

  async listCredentials(): Promise<AgentCredential[]> {
    return this.prisma.agentCredential.findMany({ orderBy: { createdAt: "asc" } });
  }

  async revokeCredential(id: string, at: Date): Promise<void> {
    await this.prisma.agentCredential.update({ where: { id }, data: { revokedAt: at } });
  }

  async createApiKey(key: ApiKey): Promise<void> {
    await this.prisma.apiKey.create({ data: key });
  }

  async listApiKeys(): Promise<ApiKey[]> {
    const rows = await this.prisma.apiKey.findMany({ orderBy: { createdAt: "asc" } });
    return rows.map((r) => ({ ...r, role: r.role as Role }));
  }

  async createSigningKey(key: SigningKey): Promise<void> {
    await this.prisma.signingKey.create({ data: { ...key, publicJwk: JSON.stringify(key.publicJwk) } });
  }

  async listSigningKeys(purpose: string): Promise<SigningKey[]> {
    const rows = await this.prisma.signingKey.findMany({ where: { purpose }, orderBy: { createdAt: "asc" } });
    return rows.map((r) => ({ ...r, alg: "ES256" as const, publicJwk: JSON.parse(r.publicJwk) as Record<string, string> }));
  }
}
