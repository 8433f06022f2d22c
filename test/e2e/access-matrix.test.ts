import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";

type Who = "admin" | "policy_author" | "agent_manager" | "auditor" | "approver" | "witness" | "metrics" | "agent";

/**
 * The specification, written out by hand: who may call each route. The test checks it against
 * the running server, and fails when a route exists that the table does not name.
 */
const MAY: Record<string, Who[]> = {
  "POST /v1/organizations": ["admin"],
  "GET /v1/organizations": ["admin", "auditor", "agent_manager", "policy_author"],
  "POST /v1/humans": ["admin", "agent_manager"],
  "GET /v1/humans": ["admin", "agent_manager", "auditor"],
  "GET /v1/humans/{id}": ["admin", "agent_manager", "auditor"],
  "POST /v1/humans/{id}/deactivate": ["admin", "agent_manager"],
  "POST /v1/humans/{id}/reactivate": ["admin", "agent_manager"],
  "POST /v1/agents": ["admin", "agent_manager"],
  "GET /v1/agents": ["admin", "agent_manager", "auditor"],
  "GET /v1/agents/{id}": ["admin", "agent_manager", "auditor"],
  "PATCH /v1/agents/{id}": ["admin", "agent_manager"],
  "POST /v1/agents/{id}/suspend": ["admin", "agent_manager"],
  "POST /v1/agents/{id}/reactivate": ["admin", "agent_manager"],
  "POST /v1/agents/{id}/retire": ["admin", "agent_manager"],
  "POST /v1/agents/{id}/transfer": ["admin", "agent_manager"],
  "POST /v1/agents/{id}/credentials": ["admin", "agent_manager"],
  "GET /v1/agents/{id}/credentials": ["admin", "agent_manager", "auditor"],
  "DELETE /v1/agents/{id}/credentials/{credential_id}": ["admin", "agent_manager"],
  "GET /v1/inventory/agents": ["admin", "agent_manager", "auditor"],
  "GET /v1/me": ["admin", "agent_manager", "auditor", "policy_author", "approver"],
  "GET /v1/agents/{id}/permissions": ["admin", "agent_manager", "auditor"],
  "POST /v1/agents/{id}/clients": ["admin", "agent_manager"],
  "GET /v1/agents/{id}/clients": ["admin", "agent_manager", "auditor"],
  "DELETE /v1/agents/{id}/clients/{client_id}": ["admin", "agent_manager"],
  "POST /v1/signing-keys/rotate": ["admin"],
  "POST /v1/api-keys": ["admin"],
  "GET /v1/api-keys": ["admin"],
  "DELETE /v1/api-keys/{id}": ["admin"],
  "POST /v1/decisions": ["agent"],
  "GET /v1/agent/permissions": ["agent"],
  // Prometheus: a metrics key reads this and nothing else.
  "GET /metrics": ["admin", "metrics"],
  "GET /v1/approvals": ["admin", "auditor", "agent_manager", "approver", "agent"],
  "GET /v1/approvals/{id}": ["admin", "auditor", "agent_manager", "approver", "agent"],
  "POST /v1/approvals/{id}/approve": ["admin", "approver"],
  "POST /v1/approvals/{id}/reject": ["admin", "approver"],
  "GET /v1/chron/records": ["admin", "auditor"],
  "GET /v1/chron/verify": ["admin", "auditor"],
  "GET /v1/chron/consistency": ["admin", "auditor"],
  "POST /v1/witness/heads": ["admin", "witness"],
  "GET /v1/witness/heads": ["admin", "auditor", "witness"],
  "GET /v1/chron/export": ["admin", "auditor"],
  "GET /v1/chron/summary": ["admin", "auditor"],
  "POST /v1/chron/retention": ["admin"],
  "POST /v1/policies": ["admin", "policy_author"],
  "POST /v1/policies/archive": ["admin", "policy_author"],
  "GET /v1/policies": ["admin", "policy_author", "auditor"],
  "GET /v1/policies/status": ["admin", "policy_author", "auditor"],
  "GET /v1/policies/signing-keys": ["admin", "policy_author", "auditor"],
  "POST /v1/policies/signing-keys/rotate": ["admin"],
  "PUT /v1/policies/shadow": ["admin", "policy_author"],
  "DELETE /v1/policies/shadow": ["admin", "policy_author"],
  "GET /v1/policies/shadow/report": ["admin", "policy_author", "auditor"],
  "POST /v1/policies/{version}/replay": ["admin", "policy_author"],
  "GET /v1/policies/replays": ["admin", "policy_author", "auditor"],
  "GET /v1/policies/replays/{id}": ["admin", "policy_author", "auditor"],
  "GET /v1/bundles/{name}": ["admin", "policy_author", "auditor"],
  "GET /v1/policies/{version}": ["admin", "policy_author", "auditor"],
  "GET /v1/policies/{version}/diff": ["admin", "policy_author", "auditor"],
  "POST /v1/policies/{version}/activate": ["admin", "policy_author"],
};

const NOWHERE = "00000000-0000-4000-8000-000000000000";

describe.each(databaseKinds())("access on %s", (kind) => {
  let s: TestServer;
  const creds = {} as Record<Who, string>;
  const org = {} as Record<"acme" | "globex", { admin: string; auditor: string; manager: string; human: string; agent: string; token: string; keyId: string }>;
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
    creds.admin = s.admin;
    for (const role of ["policy_author", "agent_manager", "auditor", "witness", "metrics"] as const) {
      creds[role] = (await s.http.post("/v1/api-keys").set(bearer(s.admin)).send({ name: role, role }).expect(201)).body.secret;
    }
    for (const slug of ["acme", "globex"] as const) {
      await s.http.post("/v1/organizations").set(bearer(s.admin)).send({ slug, name: slug }).expect(201);
      const key = async (role: string) => (await s.http.post("/v1/api-keys").set(bearer(s.admin)).send({ name: `${slug} ${role}`, role, organization: slug }).expect(201)).body;
      const admin = await key("admin");
      const auditor = (await key("auditor")).secret;
      const manager = (await key("agent_manager")).secret;
      const human = (await s.http.post("/v1/humans").set(bearer(manager)).send({ organization: slug, name: "Owner", email: `owner@${slug}.example` }).expect(201)).body.id;
      const agent = (await s.http.post("/v1/agents").set(bearer(manager)).send({ organization: slug, name: "bot", owner: human, skills: [{ name: "deploy", version: "1.0.0" }] }).expect(201)).body.id;
      const token = (await s.http.post(`/v1/agents/${agent}/credentials`).set(bearer(manager)).send({}).expect(201)).body.token;
      await s.http.post("/v1/decisions").set(bearer(token)).send({ action: "deploy", resource: "staging", purpose: "p", skill: { name: "deploy", version: "1.0.0" } }).expect(200);
      org[slug] = { admin: admin.secret, keyId: admin.id, auditor, manager, human, agent, token };
    }
    creds.agent = org.acme.token;
    // An approver key is always confined to one organisation.
    creds.approver = (await s.http.post("/v1/api-keys").set(bearer(s.admin)).send({ name: "approver", role: "approver", organization: "acme" }).expect(201)).body.secret;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("the table names every protected route", () => {
    const routes = s.claiim.routes.filter((r) => !("public" in r.access)).map((r) => `${r.method.toUpperCase()} ${r.path}`);
    expect(routes.sort()).toEqual(Object.keys(MAY).sort());
  });

  test("each role is refused everywhere the table does not admit it, and admitted where it does", async () => {
    const failures: string[] = [];
    for (const [route, may] of Object.entries(MAY)) {
      const [method, template] = route.split(" ");
      const url = template.replace("{id}", NOWHERE).replace("{credential_id}", NOWHERE).replace("{client_id}", NOWHERE).replace("{version}", "999").replace("{name}", "nothing");
      for (const who of Object.keys(creds) as Who[]) {
        const res = await s.http[method.toLowerCase() as "get"](url).set(bearer(creds[who])).set("Content-Type", "application/json").send(method === "GET" || method === "DELETE" ? undefined : "{}");
        const admitted = res.status !== 403 && res.status !== 401;
        if (admitted !== may.includes(who)) failures.push(`${who} ${route}: ${res.status} ${res.body.code}`);
      }
    }
    expect(failures).toEqual([]);
  });

  test("a key confined to one organisation can neither see nor touch another's agents, humans, keys or records", async () => {
    const acme = bearer(org.acme.admin);
    const g = org.globex;
    const notFound = async (method: "get" | "post" | "patch" | "delete", url: string, body?: object) => {
      const res = await s.http[method](url).set(acme).send(body);
      expect([url, res.status]).toEqual([url, 404]);
    };
    await notFound("get", `/v1/agents/${g.agent}`);
    await notFound("patch", `/v1/agents/${g.agent}`, { description: "mine now" });
    await notFound("post", `/v1/agents/${g.agent}/suspend`, { reason: "x" });
    await notFound("post", `/v1/agents/${g.agent}/reactivate`, { reason: "x" });
    await notFound("post", `/v1/agents/${g.agent}/retire`, { reason: "x" });
    await notFound("post", `/v1/agents/${g.agent}/transfer`, { owner: org.acme.human, reason: "x" });
    await notFound("post", `/v1/agents/${g.agent}/credentials`, {});
    await notFound("get", `/v1/agents/${g.agent}/credentials`);
    await notFound("get", `/v1/agents/${g.agent}/permissions`);
    await notFound("post", `/v1/agents/${g.agent}/clients`, { method: "client_secret" });
    await notFound("get", `/v1/agents/${g.agent}/clients`);
    await notFound("get", "/v1/inventory/agents?organization=globex");
    await notFound("get", `/v1/humans/${g.human}`);
    await notFound("post", `/v1/humans/${g.human}/deactivate`, { reason: "x" });
    await notFound("delete", `/v1/api-keys/${g.keyId}`);
    await notFound("post", "/v1/agents", { organization: "globex", name: "intruder", owner: g.human, skills: [{ name: "deploy", version: "1.0.0" }] });
    await notFound("post", "/v1/humans", { organization: "globex", name: "Mole", email: "mole@globex.example" });
    await notFound("post", "/v1/api-keys", { name: "x", role: "admin", organization: "globex" });
    await notFound("get", "/v1/agents?organization=globex");
    await notFound("get", "/v1/chron/records?organization=globex");
    await notFound("get", "/v1/chron/summary?organization=globex&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z");

    const owner = await s.http.post("/v1/agents").set(acme).send({ organization: "acme", name: "cross", owner: g.human, skills: [{ name: "deploy", version: "1.0.0" }] }).expect(400);
    expect(owner.body.code).toBe("owner_not_found");
    expect((await s.http.post("/v1/organizations").set(acme).send({ slug: "mine", name: "Mine" }).expect(403)).body.code).toBe("organization_scope");
    expect((await s.http.post("/v1/policies").set(acme).send({ files: { "a.rego": "package a" }, message: "m" }).expect(403)).body.code).toBe("organization_scope");
    expect((await s.http.post("/v1/signing-keys/rotate").set(acme).send({}).expect(403)).body.code).toBe("organization_scope");

    const slugs = (list: { organization: string }[]) => [...new Set(list.map((x) => x.organization))];
    expect(slugs((await s.http.get("/v1/agents").set(acme).expect(200)).body.agents)).toEqual(["acme"]);
    expect(slugs((await s.http.get("/v1/humans").set(acme).expect(200)).body.humans)).toEqual(["acme"]);
    const inventory = (await s.http.get("/v1/inventory/agents").set(acme).expect(200)).body.agents as { organization: string }[];
    expect(slugs(inventory)).toEqual(["acme"]);
    expect((await s.http.get("/v1/organizations").set(acme).expect(200)).body.organizations.map((o: { slug: string }) => o.slug)).toEqual(["acme"]);
    expect(slugs((await s.http.get("/v1/api-keys").set(acme).expect(200)).body.api_keys)).toEqual(["acme"]);
    const confined = await s.http.post("/v1/api-keys").set(acme).send({ name: "acme bot key", role: "auditor" }).expect(201);
    expect(confined.body.organization).toBe("acme");

    for (const auditor of [org.acme.auditor, acme.Authorization.slice(7)]) {
      const records = (await s.http.get("/v1/chron/records?limit=1000").set(bearer(auditor)).expect(200)).body.records as { organization: { slug: string } | null }[];
      expect(records.length).toBeGreaterThan(3);
      expect([...new Set(records.map((r) => r.organization?.slug))]).toEqual(["acme"]);
      expect((await s.http.get(`/v1/chron/records?agent=${g.agent}`).set(bearer(auditor)).expect(200)).body.records).toEqual([]);
    }
    const everything = (await s.http.get("/v1/chron/records?limit=1000").set(bearer(s.admin)).expect(200)).body.records as { organization: { slug: string } | null }[];
    expect(new Set(everything.map((r) => r.organization?.slug ?? null))).toEqual(new Set(["acme", "globex", null]));
  });

  test("an agent token asks only about its own agent", async () => {
    const res = await s.http.post("/v1/decisions").set(bearer(org.globex.token)).send({ action: "deploy", resource: "staging", purpose: "p", skill: { name: "deploy", version: "1.0.0" } }).expect(200);
    const [rec] = (await s.http.get(`/v1/chron/records?agent=${org.globex.agent}&decision=allow&limit=1000`).set(bearer(s.admin))).body.records.slice(-1);
    expect(rec).toMatchObject({ decision_id: res.body.decision_id, organization: { slug: "globex" }, agent: { id: org.globex.agent } });
  });
});
