import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { failWrites, sql } from "../support/sql";

const skill = { name: "deploy", version: "1.2.0" };
const staging = { action: "deploy", resource: "staging", purpose: "release", skill };

describe.each(databaseKinds())("agent lifecycle and accountability on %s", (kind) => {
  let s: TestServer;
  let alice: { id: string };
  let bob: { id: string };
  let agentId: string;
  let token: string;
  let operator: { id: string; secret: string };

  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const op = () => ({ Authorization: `Bearer ${operator.secret}` });
  const decide = (body: object = staging) => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(body).expect(200).then((r) => r.body);
  const events = async (type: string) =>
    (await s.http.get(`/v1/chron/records?kind=event&agent=${agentId}&limit=1000`).set(admin()).expect(200)).body.records.filter((r: { type: string }) => r.type === type);

  beforeAll(async () => {
    s = await startTestServer(kind);
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    const key = await s.http.post("/v1/api-keys").set(admin()).send({ name: "ops automation", role: "agent_manager", organization: "acme" }).expect(201);
    operator = { id: key.body.id, secret: key.body.secret };
    expect(key.body).toMatchObject({ role: "agent_manager", organization: "acme", prefix: expect.any(String), revoked_at: null });
    expect(operator.secret.startsWith(`claiim_${key.body.prefix}_`)).toBe(true);
    alice = (await s.http.post("/v1/humans").set(op()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201)).body;
    bob = (await s.http.post("/v1/humans").set(op()).send({ organization: "acme", name: "Bob", email: "bob@acme.example" }).expect(201)).body;
    agentId = (await s.http.post("/v1/agents").set(op()).send({ organization: "acme", name: "deploy-bot", owner: alice.id, skills: [skill] }).expect(201)).body.id;
    token = (await s.http.post(`/v1/agents/${agentId}/credentials`).set(op()).send({}).expect(201)).body.token;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("registration is recorded with its actor, and API key secrets are stored only as hashes", async () => {
    const [registered] = await events("agent.registered");
    expect(registered).toMatchObject({
      actor: { type: "api_key", id: operator.id, name: "ops automation" },
      subject: { type: "agent", id: agentId, name: "deploy-bot" },
      organization: { slug: "acme" },
      accountable_human: { id: alice.id, email: "alice@acme.example" },
      before: null,
      after: { name: "deploy-bot", owner_id: alice.id, status: "active", skills: [skill] },
    });
    const rows = await sql(s.claiim.db, "SELECT secret_hash FROM api_keys");
    expect(JSON.stringify(rows)).not.toContain(operator.secret);
    const all = JSON.stringify((await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body);
    expect(all).not.toContain(operator.secret);
    expect(all).not.toContain(token);
  });

  test("suspension is the kill switch: the very next decision is a deny, and the change is recorded", async () => {
    expect((await decide()).decision).toBe("allow");
    await s.http.post(`/v1/agents/${agentId}/suspend`).set(op()).send({ reason: "leaking secrets in logs" }).expect(200);
    expect(await decide()).toMatchObject({ decision: "deny", reasons: ['agent "deploy-bot" is suspended, not active'] });
    const [suspended] = await events("agent.suspended");
    expect(suspended).toMatchObject({ reason: "leaking secrets in logs", before: { status: "active" }, after: { status: "suspended", status_reason: "leaking secrets in logs" } });
    await s.http.post(`/v1/agents/${agentId}/reactivate`).set(op()).send({ reason: "fixed" }).expect(200);
    expect((await decide()).decision).toBe("allow");
    expect(await events("agent.reactivated")).toHaveLength(1);
  });

  test("a new skill version is a recorded change, and the policy sees the registered version only", async () => {
    const res = await s.http.patch(`/v1/agents/${agentId}`).set(op()).send({ skills: [{ name: "deploy", version: "1.3.0" }], reason: "upgrade" }).expect(200);
    expect(res.body.skills).toEqual([{ name: "deploy", version: "1.3.0", registered_at: expect.any(String) }]);
    expect((await decide()).reasons).toEqual(['skill "deploy" version "1.2.0" is not the registered version "1.3.0"']);
    expect((await decide({ ...staging, skill: { name: "deploy", version: "1.3.0" } })).decision).toBe("allow");
    const [updated] = await events("agent.updated");
    expect(updated).toMatchObject({ reason: "upgrade", before: { skills: [{ name: "deploy", version: "1.2.0" }] }, after: { skills: [{ name: "deploy", version: "1.3.0" }] } });
    const bad = await s.http.patch(`/v1/agents/${agentId}`).set(op()).send({ skills: [{ name: "deploy", version: "v1" }] }).expect(400);
    expect(bad.body).toMatchObject({ code: "invalid_semver", errors: [{ path: "skills.0.version" }] });
  });

  test("ownership transfer is explicit, recorded, and Chron names who was accountable at each decision", async () => {
    const v13 = { ...staging, skill: { name: "deploy", version: "1.3.0" } };
    const before = await decide(v13);
    await s.http.post(`/v1/agents/${agentId}/transfer`).set(op()).send({ owner: "bob@acme.example", reason: "Alice changed teams" }).expect(200);
    const after = await decide(v13);
    const [r1, r2] = await Promise.all(
      [before, after].map(async (d) => (await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [d.decision_id]))[0].content as string),
    );
    expect(JSON.parse(r1).accountable_human.id).toBe(alice.id);
    expect(JSON.parse(r2).accountable_human.id).toBe(bob.id);
    const [moved] = await events("agent.owner_changed");
    expect(moved).toMatchObject({ reason: "Alice changed teams", before: { owner_id: alice.id }, after: { owner_id: bob.id } });
    expect((await s.http.post(`/v1/agents/${agentId}/transfer`).set(op()).send({ owner: bob.id, reason: "again" }).expect(409)).body.code).toBe("owner_unchanged");
    expect((await s.http.post(`/v1/agents/${agentId}/transfer`).set(op()).send({ owner: "eve@acme.example", reason: "x" }).expect(400)).body.code).toBe("owner_not_found");
  });

  test("when the accountable human leaves, their agents are suspended at once, and stay so until reassigned", async () => {
    const v13 = { ...staging, skill: { name: "deploy", version: "1.3.0" } };
    const res = await s.http.post(`/v1/humans/${bob.id}/deactivate`).set(op()).send({ reason: "left the company" }).expect(200);
    expect(res.body.human.status).toBe("deactivated");
    expect(res.body.suspended_agents.map((a: { id: string }) => a.id)).toEqual([agentId]);
    expect(await decide(v13)).toMatchObject({ decision: "deny", reasons: ['accountable human "bob@acme.example" is deactivated, not active', 'agent "deploy-bot" is suspended, not active'] });

    const tail = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records as { seq: number; type: string }[];
    const deactivated = tail.find((r) => r.type === "human.deactivated")!;
    expect(tail.find((r) => r.seq === deactivated.seq + 1)).toMatchObject({ type: "agent.suspended", subject: { id: agentId }, reason: "accountable human bob@acme.example was deactivated" });

    const refused = await s.http.post(`/v1/agents/${agentId}/reactivate`).set(op()).send({ reason: "please" }).expect(409);
    expect(refused.body.code).toBe("owner_inactive");
    expect((await s.http.post("/v1/agents").set(op()).send({ organization: "acme", name: "orphan-bot", owner: bob.id, skills: [skill] }).expect(409)).body.code).toBe("owner_inactive");
    await s.http.post(`/v1/agents/${agentId}/transfer`).set(op()).send({ owner: alice.id, reason: "Alice takes over" }).expect(200);
    await s.http.post(`/v1/agents/${agentId}/reactivate`).set(op()).send({ reason: "new owner" }).expect(200);
    expect((await decide(v13)).decision).toBe("allow");
  });

  test("a change and its record commit together or not at all", async () => {
    const events = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE kind = 'event'"))[0].n);
    const before = await events();
    const undo = await failWrites(s.claiim.db, "agents", "UPDATE");
    try {
      const res = await s.http.post(`/v1/agents/${agentId}/suspend`).set(op()).send({ reason: "will fail" }).expect(503);
      expect(res.body.code).toBe("database_unavailable");
    } finally {
      await undo();
    }
    expect(await events()).toBe(before);
    expect((await s.http.get(`/v1/agents/${agentId}`).set(op()).expect(200)).body.status).toBe("active");
    const [row] = await sql(s.claiim.db, "SELECT status FROM agents WHERE id = $1", [agentId]);
    expect(row.status).toBe("active");
    expect((await decide({ ...staging, skill: { name: "deploy", version: "1.3.0" } })).decision).toBe("allow");
    expect((await s.http.get("/v1/chron/verify").set(admin())).body.valid).toBe(true);
  });

  test("retirement is final: decisions are denied, and nothing can change the agent any more", async () => {
    await s.http.post(`/v1/agents/${agentId}/retire`).set(op()).send({ reason: "replaced by deploy-bot-2" }).expect(200);
    expect(await decide({ ...staging, skill: { name: "deploy", version: "1.3.0" } })).toMatchObject({ decision: "deny", reasons: ['agent "deploy-bot" is retired, not active'] });
    for (const [path, body] of [
      ["reactivate", { reason: "no" }],
      ["suspend", { reason: "no" }],
      ["credentials", {}],
    ] as const) {
      expect((await s.http.post(`/v1/agents/${agentId}/${path}`).set(op()).send(body).expect(409)).body.code).toBe("agent_retired");
    }
    expect(await events("agent.retired")).toHaveLength(1);
  });

  test("every change above is in Chron, and the chain verifies", async () => {
    const types = ((await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records as { type: string }[]).map((r) => r.type);
    for (const t of ["organization.created", "api_key.created", "human.registered", "agent.registered", "credential.issued", "agent.suspended", "agent.reactivated", "agent.updated", "agent.owner_changed", "human.deactivated", "agent.retired", "policy.published", "policy.activated", "signing_key.created"]) {
      expect(types).toContain(t);
    }
    expect((await s.http.get("/v1/chron/verify").set(admin())).body.valid).toBe(true);
  });
});
