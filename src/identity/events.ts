// How identity changes are told in Chron: what is kept of each kind of subject before and after
// a change (never a secret or its hash), and the event that carries it. Events about an agent
// carry the agent and its accountable human, so that ?agent= and ?owner= find them.
import { newEvent, type EventContent } from "../chron/record";
import type { Actor } from "../shared/principal";
import type { Agent, AgentCredential, ApiKey, Human, Organization } from "./model";

export const agentState = (a: Agent) => ({
  name: a.name,
  description: a.description,
  owner_id: a.ownerId,
  status: a.status,
  status_reason: a.statusReason,
  skills: a.skills.map((s) => ({ name: s.name, version: s.version })),
});
export const humanState = (h: Human) => ({ name: h.name, email: h.email, status: h.status });
export const credentialState = (c: AgentCredential) => ({ agent_id: c.agentId, kid: c.kid, expires_at: c.expiresAt.toISOString(), revoked_at: c.revokedAt?.toISOString() ?? null });
export const apiKeyState = (k: ApiKey) => ({
  name: k.name,
  prefix: k.prefix,
  role: k.role,
  org_id: k.orgId,
  expires_at: k.expiresAt?.toISOString() ?? null,
  revoked_at: k.revokedAt?.toISOString() ?? null,
});

/** An identity event: its subject, the organisation and the agent (with its owner) it concerns, and the state before and after. */
export function identityEvent(
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
