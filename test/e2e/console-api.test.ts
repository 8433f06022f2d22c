import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { FakeIdp } from "../support/fake-idp";

// What the console needs of the API, and nothing the API did not already promise: newest-first
// Chron pages, the explorer's filters, paged agents and humans, and who the caller is.

const skill = { name: "deploy", version: "1.2.0" };
const ask = (resource: string) => ({ action: "deploy", resource, purpose: "release", skill });

describe.each(databaseKinds())("the API the console uses, on %s", (kind) => {
  let s: TestServer;
  const idp = new FakeIdp();
  let agentId: string;
  let globexAgentId: string;
  let globexAuditor: string;
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
  const admin = () => bearer(s.admin);
  const records = async (query: string, token = s.admin) => (await s.http.get(`/v1/chron/records?${query}`).set(bearer(token)).expect(200)).body;

  beforeAll(async () => {
    await idp.start();
    s = await startTestServer(kind, { env: idp.env() });
    for (const org of ["acme", "globex"]) {
      await s.http.post("/v1/organizations").set(admin()).send({ slug: org, name: org }).expect(201);
      await s.http.post("/v1/humans").set(admin()).send({ organization: org, name: `Owner of ${org}`, email: `owner@${org}.example` }).expect(201);
    }
    for (let i = 0; i < 7; i++) {
      await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: `bot-${i}`, owner: "owner@acme.example", skills: [skill] }).expect(201);
    }
    agentId = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "owner@acme.example", skills: [skill] }).expect(201)).body.id;
    globexAgentId = (await s.http.post("/v1/agents").set(admin()).send({ organization: "globex", name: "deploy-bot", owner: "owner@globex.example", skills: [skill] }).expect(201)).body.id;
    const token = (await s.http.post(`/v1/agents/${agentId}/credentials`).set(admin()).send({}).expect(201)).body.token;
    const globexToken = (await s.http.post(`/v1/agents/${globexAgentId}/credentials`).set(admin()).send({}).expect(201)).body.token;
    // Of acme's twelve: four allowed (staging), four denied (no rule permits "dev"), four waiting
    // for a human (production: one approval, asked for once and answered with it three more times).
    const ANSWERS: Record<string, string> = { staging: "allow", dev: "deny", production: "approval_required" };
    for (let i = 0; i < 12; i++) {
      const resource = ["production", "staging", "dev"][i % 3];
      expect((await s.http.post("/v1/decisions").set(bearer(token)).send(ask(resource)).expect(200)).body.decision).toBe(ANSWERS[resource]);
      if (i % 4 === 0) expect((await s.http.post("/v1/decisions").set(bearer(globexToken)).send(ask("production")).expect(200)).body.decision).toBe("approval_required");
    }
    globexAuditor = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "globex audit", role: "auditor", organization: "globex" }).expect(201)).body.secret;
  });
  afterAll(async () => {
    await s?.stop();
    await idp.stop();
  });

  test("newest first: pages are descending, complete and disjoint, and each cursor belongs to one order", async () => {
    const all = (await records("limit=1000")).records.map((r: { seq: number }) => r.seq);
    const seen: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { records: { seq: number }[]; next_cursor: string | null } = await records(`order=desc&limit=7${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.records.length).toBeLessThanOrEqual(7);
      seen.push(...page.records.map((r) => r.seq));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor && pages < 100);
    expect(seen).toEqual([...all].reverse());
    const asc = await records("limit=3");
    const desc = await records("order=desc&limit=3");
    expect((await s.http.get(`/v1/chron/records?order=desc&cursor=${asc.next_cursor}`).set(admin()).expect(400)).body.code).toBe("invalid_cursor");
    expect((await s.http.get(`/v1/chron/records?cursor=${desc.next_cursor}`).set(admin()).expect(400)).body.code).toBe("invalid_cursor");
    expect((await s.http.get("/v1/chron/records?order=sideways").set(admin()).expect(400)).body.code).toBe("validation_failed");
  });

  test("the explorer's filters: each outcome (approval_required too), action (an event's type too), policy version, sequence range, combined with newest first", async () => {
    type Decided = { seq: number; decision: string; agent: { id: string }; resource: string; reason_codes: string[]; approval?: { id: string; status: string } };
    const denies: Decided[] = (await records(`agent=${agentId}&decision=deny&order=desc`)).records;
    expect(denies.map((r) => [r.decision, r.agent.id, r.resource, r.reason_codes])).toEqual(Array(4).fill(["deny", agentId, "dev", ["no_rule_permits"]]));
    expect(denies.map((r) => r.seq)).toEqual([...denies.map((r) => r.seq)].sort((a, b) => b - a));
    const waiting: Decided[] = (await records(`agent=${agentId}&decision=approval_required&order=desc`)).records;
    expect(waiting.map((r) => [r.decision, r.agent.id, r.resource, r.reason_codes])).toEqual(Array(4).fill(["approval_required", agentId, "production", ["approval_required"]]));
    // One approval, asked for by the first and named by every later ask of the same request.
    expect(new Set(waiting.map((r) => r.approval?.id)).size).toBe(1);
    expect(waiting.every((r) => r.approval?.status === "pending")).toBe(true);
    expect((await records(`agent=${agentId}&decision=allow`)).records.map((r: Decided) => r.resource)).toEqual(Array(4).fill("staging"));
    expect((await records("decision=approval_required")).records).toHaveLength(7);
    expect((await records("action=approval.requested")).records.map((r: { agent: { id: string } }) => r.agent.id).sort()).toEqual([agentId, globexAgentId].sort());
    expect((await s.http.get("/v1/chron/records?decision=maybe").set(admin()).expect(400)).body.code).toBe("validation_failed");
    // The dashboard's counts: the three outcomes apart, and the approvals asked for.
    const today = `from=${new Date(Date.now() - 86_400_000).toISOString()}&to=${new Date(Date.now() + 60_000).toISOString()}`;
    const summary = (await s.http.get(`/v1/chron/summary?${today}`).set(admin()).expect(200)).body;
    expect(summary.totals).toMatchObject({ allow: 4, deny: 4, approval_required: 7, approvals: { requested: 2, approved: 0, rejected: 0, expired: 0, used: 0 } });
    expect((await s.http.get(`/v1/chron/summary?${today}`).set(bearer(globexAuditor)).expect(200)).body.totals).toMatchObject({ allow: 0, deny: 0, approval_required: 3, approvals: { requested: 1 } });
    expect((await records("action=deploy&kind=decision")).records).toHaveLength(15);
    expect((await records("action=agent.registered")).records.map((r: { type: string }) => r.type)).toEqual(Array(9).fill("agent.registered"));
    expect((await records("policy_version=1&kind=decision")).records).toHaveLength(15);
    expect((await records("policy_version=2")).records).toHaveLength(0);
    const one = await records("from_seq=5&to_seq=5");
    expect(one.records.map((r: { seq: number }) => r.seq)).toEqual([5]);
    const window = await records("from_seq=3&to_seq=9&order=desc&limit=4");
    expect(window.records.map((r: { seq: number }) => r.seq)).toEqual([9, 8, 7, 6]);
    expect((await records(`from_seq=3&to_seq=9&order=desc&limit=4&cursor=${window.next_cursor}`)).records.map((r: { seq: number }) => r.seq)).toEqual([5, 4, 3]);
    expect((await s.http.get("/v1/chron/records?from_seq=9&to_seq=3").set(admin()).expect(400)).body.code).toBe("range_inverted");
  });

  test("a key confined to one organisation sees its own records only, in either order, even when it names a record of another", async () => {
    const own = await records("order=desc&limit=1000", globexAuditor);
    expect(own.records.length).toBeGreaterThan(0);
    expect(own.records.every((r: { organization?: { slug: string } }) => r.organization?.slug === "globex")).toBe(true);
    const acmeSeq = (await records(`agent=${agentId}&limit=1`)).records[0].seq;
    expect((await records(`from_seq=${acmeSeq}&to_seq=${acmeSeq}`, globexAuditor)).records).toHaveLength(0);
    expect((await records(`agent=${agentId}&order=desc`, globexAuditor)).records).toHaveLength(0);
  });

  test("agents and humans page on the server by name, with a text search, and without limit everything comes back as before", async () => {
    const everything = (await s.http.get("/v1/agents").set(admin()).expect(200)).body;
    expect(everything.agents).toHaveLength(9);
    expect(everything.next_cursor).toBeNull();
    const names: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { agents: { name: string; id: string }[]; next_cursor: string | null } = (
        await s.http.get(`/v1/agents?limit=4${cursor ? `&cursor=${cursor}` : ""}`).set(admin()).expect(200)
      ).body;
      expect(page.agents.length).toBeLessThanOrEqual(4);
      names.push(...page.agents.map((a) => a.name));
      cursor = page.next_cursor;
    } while (cursor);
    expect(names).toEqual([...names].sort());
    expect(names).toHaveLength(9);
    expect((await s.http.get("/v1/agents?q=DEPLOY").set(admin()).expect(200)).body.agents.map((a: { id: string }) => a.id).sort()).toEqual([agentId, globexAgentId].sort());
    expect((await s.http.get("/v1/agents?q=deploy").set(bearer(globexAuditor)).expect(200)).body.agents.map((a: { id: string }) => a.id)).toEqual([globexAgentId]);
    expect((await s.http.get("/v1/agents?limit=2&cursor=bm9wZQ").set(admin()).expect(400)).body.code).toBe("invalid_cursor");
    const humans = (await s.http.get("/v1/humans?limit=1&q=example").set(admin()).expect(200)).body;
    expect(humans.humans.map((h: { email: string }) => h.email)).toEqual(["owner@acme.example"]);
    const next = (await s.http.get(`/v1/humans?limit=1&q=example&cursor=${humans.next_cursor}`).set(admin()).expect(200)).body;
    expect(next.humans.map((h: { email: string }) => h.email)).toEqual(["owner@globex.example"]);
    expect(next.next_cursor).toBeNull();
  });

  test("GET /v1/me names the caller (a key of any role, or a signed-in human with or without a role), its roles and its organisation; agents are refused", async () => {
    expect((await s.http.get("/v1/me").set(admin()).expect(200)).body).toMatchObject({ kind: "api_key", roles: ["admin"], organization: null });
    expect((await s.http.get("/v1/me").set(bearer(globexAuditor)).expect(200)).body).toMatchObject({ kind: "api_key", name: "globex audit", roles: ["auditor"], organization: "globex" });
    const approver = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "acme bridge", role: "approver", organization: "acme" }).expect(201)).body.secret;
    expect((await s.http.get("/v1/me").set(bearer(approver)).expect(200)).body).toMatchObject({ kind: "api_key", name: "acme bridge", roles: ["approver"], organization: "acme" });
    // A human signed in with the identity provider needs no role to sign in to the console: an
    // accountable human answers the approvals that name them. /v1/me grants nothing by itself.
    const owner = await idp.sign({ name: "Owner of acme", email: "owner@acme.example", claiim_org: "acme" }, { sub: "00u-owner" });
    expect((await s.http.get("/v1/me").set(bearer(owner)).expect(200)).body).toEqual({ kind: "human", id: expect.stringContaining("00u-owner"), name: "Owner of acme", roles: [], organization: "acme" });
    expect((await s.http.get("/v1/chron/records").set(bearer(owner)).expect(403)).body.code).toBe("role_not_allowed");
    expect((await s.http.get("/v1/approvals?approver=me").set(bearer(owner)).expect(200)).body.approvals.map((a: { agent: { id: string } }) => a.agent.id)).toEqual([agentId]);
    const token = (await s.http.post(`/v1/agents/${agentId}/credentials`).set(admin()).send({}).expect(201)).body.token;
    expect((await s.http.get("/v1/me").set(bearer(token)).expect(403)).body.code).toBe("agent_not_allowed");
    expect((await s.http.get("/v1/me").expect(401)).body.code).toBe("credential_missing");
  });
});
