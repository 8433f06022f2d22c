import type { TestServer } from "./claiim";

/** What the helpers use of a server: a test server, or a CLAIIM process (test/support/process.ts). */
export type Served = Pick<TestServer, "http" | "admin">;

export interface TestAgent {
  orgSlug: string;
  humanId: string;
  agentId: string;
  clientId: string;
  clientSecret: string;
}

export const DEPLOY_SKILL = { name: "deploy", version: "1.2.0" } as const;

/**
 * The deployment story's cast on a running CLAIIM: an organisation, its accountable human, the
 * deploy-bot agent with the deploy skill, and an OAuth client_secret client for it.
 */
export async function registerDeployBot(s: Served, slug = "acme", name = "deploy-bot"): Promise<TestAgent> {
  const admin = { Authorization: `Bearer ${s.admin}` };
  await s.http.post("/v1/organizations").set(admin).send({ slug, name: slug }).expect(201);
  const humanId = (await s.http.post("/v1/humans").set(admin).send({ organization: slug, name: "Alice Ops", email: `alice@${slug}.example` }).expect(201)).body.id;
  const agentId = (await s.http.post("/v1/agents").set(admin).send({ organization: slug, name, owner: humanId, skills: [DEPLOY_SKILL] }).expect(201)).body.id;
  const client = (await s.http.post(`/v1/agents/${agentId}/clients`).set(admin).send({ method: "client_secret" }).expect(201)).body;
  return { orgSlug: slug, humanId, agentId, clientId: client.client_id, clientSecret: client.client_secret };
}

/** An access token for the agent's client, from the real token endpoint. */
export async function accessToken(s: Served, a: TestAgent): Promise<string> {
  const res = await s.http.post("/oauth/token").auth(a.clientId, a.clientSecret).type("form").send({ grant_type: "client_credentials" }).expect(200);
  return res.body.access_token;
}

/** Decision records in Chron, read straight from the API (oldest first). */
export async function decisionRecords(s: Served, agentId: string): Promise<Record<string, unknown>[]> {
  const res = await s.http.get(`/v1/chron/records?kind=decision&agent=${agentId}&limit=1000`).set({ Authorization: `Bearer ${s.admin}` }).expect(200);
  return res.body.records;
}
