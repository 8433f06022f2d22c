// Read your writes across processes: what is created through one CLAIIM process can be used at once
// through another (a new connection in worker mode lands on another worker), before the second
// follows the first's Chron events by itself. Here the second process follows only once a minute,
// so each use below is answered only because a miss makes it catch up first (on SQLite; on
// PostgreSQL a NOTIFY may wake it sooner).
import request from "supertest";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { accessToken, DEPLOY_SKILL, registerDeployBot } from "../support/agents";
import { spawnReplica, type Replica } from "../support/replicas";

describe.each(databaseKinds())("read your writes across processes on %s", (kind) => {
  let s: TestServer;
  let b: Replica;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const onB = () => request(b.base);

  beforeAll(async () => {
    s = await startTestServer(kind);
    b = await spawnReplica(s, { CLAIIM_SYNC_POLL_MS: "60000", CLAIIM_SYNC_MAX_LAG_MS: "600000" });
  });
  afterAll(async () => {
    await b?.stop();
    await s?.stop();
  });

  test("an organisation, human, agent, OAuth client, credential and API key made through A are known at once through B", async () => {
    const bot = await registerDeployBot(s, `ryw-${kind}`);
    // The agent, by id, for an administrator.
    expect((await onB().get(`/v1/agents/${bot.agentId}`).set(admin()).expect(200)).body.id).toBe(bot.agentId);
    // Its OAuth client at the token endpoint (client_unknown otherwise), and the token it gives, for a decision.
    const token = (await onB().post("/oauth/token").auth(bot.clientId, bot.clientSecret).type("form").send({ grant_type: "client_credentials" }).expect(200)).body.access_token as string;
    const decided = await onB().post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send({ action: "deploy", resource: "staging", purpose: "ryw", skill: DEPLOY_SKILL }).expect(200);
    expect(decided.body.decision).toBe("allow");
    // A credential made through A, used through B.
    const second = await s.http.post("/v1/agents").set(admin()).send({ organization: `ryw-${kind}`, name: "second-bot", owner: bot.humanId, skills: [DEPLOY_SKILL] }).expect(201);
    const credential = (await s.http.post(`/v1/agents/${second.body.id}/credentials`).set(admin()).send({}).expect(201)).body.token as string;
    expect((await onB().post("/v1/decisions").set({ Authorization: `Bearer ${credential}` }).send({ action: "deploy", resource: "staging", purpose: "ryw", skill: DEPLOY_SKILL }).expect(200)).body.decision).toBe("allow");
    // An API key made through A.
    const key = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "ryw auditor", role: "auditor" }).expect(201)).body.secret as string;
    await onB().get("/v1/agents").set({ Authorization: `Bearer ${key}` }).expect(200);
    // A human made through A, named as an agent's owner through B.
    const human = (await s.http.post("/v1/humans").set(admin()).send({ organization: `ryw-${kind}`, name: "Bob Ops", email: `bob@ryw-${kind}.example` }).expect(201)).body.id as string;
    await onB().post("/v1/agents").set(admin()).send({ organization: `ryw-${kind}`, name: "third-bot", owner: human, skills: [DEPLOY_SKILL] }).expect(201);
  });

  test("what exists nowhere is still unknown after the catch-up: 401 and 404 as before", async () => {
    expect((await onB().post("/v1/decisions").set({ Authorization: "Bearer not-a-token" }).send({}).expect(401)).body.code).toBe("token_invalid");
    expect((await onB().get("/v1/agents/00000000-0000-4000-8000-000000000000").set(admin()).expect(404)).body.code).toBe("agent_not_found");
    expect((await onB().post("/oauth/token").auth("claiim-client-nobody", "secret").type("form").send({ grant_type: "client_credentials" }).expect(401)).body.code).toBe("client_unknown");
  });

  test("a replay started through one process is read through the other, while it runs and once it ended, and outlives the process that ran it", async () => {
    const bot = await registerDeployBot(s, `replay-${kind}`);
    const agent = { Authorization: `Bearer ${await accessToken(s, bot)}` };
    for (let i = 0; i < 30; i++) await s.http.post("/v1/decisions").set(agent).send({ action: "deploy", resource: i % 2 ? "staging" : "production", purpose: "replay", skill: DEPLOY_SKILL }).expect(200);
    const from = new Date(Date.now() - 3600_000).toISOString();
    const started = await onB().post("/v1/policies/1/replay").set(admin()).send({ from }).expect(202);
    // Through A at once: B saved it as it started.
    const seen = await s.http.get(started.headers.location).set(admin()).expect(200);
    expect(seen.body).toMatchObject({ id: started.body.id, version: 1, from: started.body.from, requested_by: started.body.requested_by });
    let there = seen.body;
    for (const end = Date.now() + 30_000; there.state === "running" && Date.now() < end; ) {
      await new Promise((r) => setTimeout(r, 50));
      there = (await s.http.get(started.headers.location).set(admin()).expect(200)).body;
    }
    const here = (await onB().get(started.headers.location).set(admin()).expect(200)).body;
    expect(here).toMatchObject({ state: "done", error: null });
    expect(there).toEqual(here);
    expect(here.progress.processed).toBeGreaterThanOrEqual(30);
    expect((await s.http.get("/v1/policies/replays").set(admin()).expect(200)).body.replays.map((r: { id: string }) => r.id)).toContain(here.id);
    // The process that ran it stops; another takes its place: the replay is still there, as it ended.
    await b.stop();
    b = await spawnReplica(s, { CLAIIM_SYNC_POLL_MS: "60000", CLAIIM_SYNC_MAX_LAG_MS: "600000" });
    expect((await onB().get(started.headers.location).set(admin()).expect(200)).body).toEqual(here);
    expect((await onB().get("/v1/policies/replays").set(admin()).expect(200)).body.replays).toContainEqual(here);
  }, 90_000);
});
