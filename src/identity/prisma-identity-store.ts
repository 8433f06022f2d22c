import type { Prisma, Tx } from "../db/database";
import { duplicateAs, isUniqueViolation } from "../db/duplicate";
import { ConflictError } from "../lib/errors";
import type { CodeWith } from "../lib/problems";
import type { IdentityStore } from "./identity-store";
import type { Agent, AgentClient, AgentCredential, AgentStatus, ApiKey, ClientMethod, Human, HumanStatus, Organization } from "./model";
import type { Role } from "../shared/principal";
import type { SigningKey } from "../keys/signing-keys";

function conflictOn(code: CodeWith<409>, message: string) {
  return (err: unknown): never => {
    if (isUniqueViolation(err)) throw new ConflictError(code, message);
    throw err;
  };
}

type AgentRow = Omit<Agent, "status" | "skills"> & { status: string; skills: { name: string; version: string; registeredAt: Date }[] };
const agentOf = (row: AgentRow): Agent => ({
  ...row,
  status: row.status as AgentStatus,
  skills: row.skills.map((s) => ({ name: s.name, version: s.version, registeredAt: s.registeredAt })),
});
const humanOf = <R extends { status: string }>(r: R) => ({ ...r, status: r.status as HumanStatus });
const apiKeyOf = <R extends { role: string }>(r: R) => ({ ...r, role: r.role as Role });
const clientOf = <R extends { method: string; publicJwk: string | null }>(r: R) => ({
  ...r,
  method: r.method as ClientMethod,
  publicJwk: r.publicJwk ? (JSON.parse(r.publicJwk) as Record<string, unknown>) : null,
});
const ORGANIZATION = { id: true, slug: true, name: true, createdAt: true } as const;
const SKILLS = { skills: { orderBy: { name: "asc" } } } as const;

export class PrismaIdentityStore implements IdentityStore {
  constructor(private readonly prisma: Prisma) {}

  async listOrganizations(): Promise<Organization[]> {
    return this.prisma.organization.findMany({ orderBy: { createdAt: "asc" }, select: ORGANIZATION });
  }

  async listHumans(): Promise<Human[]> {
    return (await this.prisma.human.findMany({ orderBy: { createdAt: "asc" } })).map(humanOf);
  }

  async listAgents(): Promise<Agent[]> {
    return (await this.prisma.agent.findMany({ include: SKILLS, orderBy: { createdAt: "asc" } })).map(agentOf);
  }

  async listCredentials(): Promise<AgentCredential[]> {
    return this.prisma.agentCredential.findMany({ orderBy: { createdAt: "asc" } });
  }

  async listApiKeys(): Promise<ApiKey[]> {
    return (await this.prisma.apiKey.findMany({ orderBy: { createdAt: "asc" } })).map(apiKeyOf);
  }

  async listSigningKeys(purpose: string): Promise<SigningKey[]> {
    const rows = await this.prisma.signingKey.findMany({ where: { purpose }, orderBy: { createdAt: "asc" } });
    return rows.map((r) => ({ ...r, alg: "ES256" as const, publicJwk: JSON.parse(r.publicJwk) as Record<string, string> }));
  }

  async createOrganization(org: Organization, tx: Tx): Promise<void> {
    await tx.organization.create({ data: org }).catch(conflictOn("organization_exists", `organization ${org.slug} already exists`));
  }

  async saveHuman(human: Human, tx: Tx): Promise<void> {
    await tx.human
      .upsert({ where: { id: human.id }, create: human, update: human })
      .catch(conflictOn("human_exists", `a human with email ${human.email} already exists in this organisation`));
  }

  async saveAgent(agent: Agent, tx: Tx): Promise<void> {
    const { skills, ...row } = agent;
    await tx.agent
      .upsert({ where: { id: agent.id }, create: row, update: row })
      .catch(conflictOn("agent_exists", `an agent named ${agent.name} already exists in this organisation`));
    await tx.agentSkill.deleteMany({ where: { agentId: agent.id } });
    await tx.agentSkill.createMany({ data: skills.map((s) => ({ agentId: agent.id, ...s })) });
  }

  async saveCredential(credential: AgentCredential, tx: Tx): Promise<void> {
    await tx.agentCredential.upsert({ where: { id: credential.id }, create: credential, update: credential });
  }

  async saveApiKey(key: ApiKey, tx: Tx): Promise<void> {
    await tx.apiKey.upsert({ where: { id: key.id }, create: key, update: key });
  }

  async saveSigningKey(key: SigningKey, tx: Tx): Promise<void> {
    const data = { ...key, publicJwk: JSON.stringify(key.publicJwk) };
    await tx.signingKey.upsert({ where: { kid: key.kid }, create: data, update: data });
  }

  async listClients(): Promise<AgentClient[]> {
    return (await this.prisma.agentClient.findMany({ orderBy: { createdAt: "asc" } })).map(clientOf);
  }

  findOrganization(id: string): Promise<Organization | null> {
    return this.prisma.organization.findUnique({ where: { id }, select: ORGANIZATION });
  }

  async findHuman(id: string): Promise<Human | null> {
    const row = await this.prisma.human.findUnique({ where: { id } });
    return row && humanOf(row);
  }

  async findAgent(id: string): Promise<Agent | null> {
    const row = await this.prisma.agent.findUnique({ where: { id }, include: SKILLS });
    return row && agentOf(row);
  }

  findCredential(id: string): Promise<AgentCredential | null> {
    return this.prisma.agentCredential.findUnique({ where: { id } });
  }

  async findApiKey(id: string): Promise<ApiKey | null> {
    const row = await this.prisma.apiKey.findUnique({ where: { id } });
    return row && apiKeyOf(row);
  }

  async findClient(id: string): Promise<AgentClient | null> {
    const row = await this.prisma.agentClient.findUnique({ where: { id } });
    return row && clientOf(row);
  }

  async saveClient(client: AgentClient, tx: Tx): Promise<void> {
    const data = { ...client, publicJwk: client.publicJwk ? JSON.stringify(client.publicJwk) : null };
    await tx.agentClient.upsert({ where: { id: client.id }, create: data, update: data });
  }

  async useAssertion(key: string, expiresAt: Date, tx: Tx): Promise<void> {
    await tx.usedAssertion.deleteMany({ where: { expiresAt: { lt: new Date() } } });
    await tx.usedAssertion.create({ data: { key, expiresAt } }).catch(duplicateAs("client assertion"));
  }
}
