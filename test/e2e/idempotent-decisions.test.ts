import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { accessToken, decisionRecords, DEPLOY_SKILL, registerDeployBot, type TestAgent } from "../support/agents";
import { failWrites, sql } from "../support/sql";

const staging = { action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: DEPLOY_SKILL };

describe.each(databaseKinds())("idempotent decisions on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let token: string;
  let keyCounter = 0;
  const newKey = () => `key-${process.pid}-${++keyCounter}`;
  const decide = (body: object, key?: string, t = token) => {
    const r = s.http.post("/v1/decisions").set({ Authorization: `Bearer ${t}` });
    return (key === undefined ? r : r.set("Idempotency-Key", key)).send(body);
  };
  const keyed = async (key: string) => (await decisionRecords(s, bot.agentId)).filter((r) => r.idempotency_key === key);

  beforeAll(async () => {
    s = await startTestServer(kind);
    bot = await registerDeployBot(s);
    token = await accessToken(s, bot);
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a retry with the same key and body gets the first answer and its Chron record, not a second decision", async () => {
    const key = newKey();
    const first = await decide(staging, key).expect(200);
    expect(first.headers["idempotent-replayed"]).toBeUndefined();
    const again = await decide(staging, `"${key}"`).expect(200);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(first.body);
    const records = await keyed(key);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ decision_id: first.body.decision_id, seq: first.body.chron.seq, hash: first.body.chron.hash, idempotency_key: key });
  });

  test("the same key with another body is a 409 and decides nothing", async () => {
    const key = newKey();
    await decide(staging, key).expect(200);
    const before = (await decisionRecords(s, bot.agentId)).length;
    const res = await decide({ ...staging, resource: "production" }, key).expect(409);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 409, code: "idempotency_key_reused" });
    expect((await decisionRecords(s, bot.agentId)).length).toBe(before);
  });

  test("concurrent duplicates yield exactly one Chron record and one answer", async () => {
    const key = newKey();
    const replies = await Promise.all(Array.from({ length: 25 }, () => decide(staging, key)));
    expect(replies.map((r) => r.status)).toEqual(Array(25).fill(200));
    expect(new Set(replies.map((r) => r.body.decision_id)).size).toBe(1);
    expect(replies.filter((r) => r.headers["idempotent-replayed"] === "true")).toHaveLength(24);
    expect(await keyed(key)).toHaveLength(1);
  });

  test("keys are the agent's own: another agent's same key gets its own decision", async () => {
    const key = newKey();
    const mine = await decide(staging, key).expect(200);
    const other = await registerDeployBot(s, "globex", "other-bot");
    const theirs = await decide(staging, key, await accessToken(s, other)).expect(200);
    expect(theirs.headers["idempotent-replayed"]).toBeUndefined();
    expect(theirs.body.decision_id).not.toBe(mine.body.decision_id);
  });

  test("a malformed key is a 400 and decides nothing", async () => {
    const before = (await decisionRecords(s, bot.agentId)).length;
    for (const bad of ["two words", "x".repeat(256), '"unterminated']) {
      expect((await decide(staging, bad).expect(400)).body.code).toBe("idempotency_key_invalid");
    }
    expect((await decisionRecords(s, bot.agentId)).length).toBe(before);
  });

  test("a 503 releases the key: the retry decides once, and only it is recorded", async () => {
    const key = newKey();
    const undo = await failWrites(s.claiim.db, "chron_records", "INSERT");
    try {
      expect((await decide(staging, key).expect(503)).body.code).toBe("chron_unavailable");
    } finally {
      await undo();
    }
    const retry = await decide(staging, key).expect(200);
    expect(retry.headers["idempotent-replayed"]).toBeUndefined();
    expect(await keyed(key)).toHaveLength(1);
  });

  test("after a restart, a retry still gets the first answer (keys come back from Chron), and a different body is still 409", async () => {
    const key = newKey();
    // No rule permits it: a plain deny (production asks for a human's approval since issue 13).
    const deny = await decide({ ...staging, resource: "mainframe" }, key).expect(200);
    expect(deny.body.decision).toBe("deny");
    await s.restart();
    token = await accessToken(s, bot);
    const again = await decide({ ...staging, resource: "mainframe" }, key).expect(200);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    expect(again.body).toEqual(deny.body);
    expect((await decide(staging, key).expect(409)).body.code).toBe("idempotency_key_reused");
    expect(await keyed(key)).toHaveLength(1);
    const [{ n }] = await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE kind = 'decision' AND content LIKE $1", [`%${key}%`]);
    expect(Number(n)).toBe(1);
  });

  test("the agent reads its own permissions with its own token, and nobody else's", async () => {
    const res = await s.http.get("/v1/agent/permissions").set({ Authorization: `Bearer ${token}` }).expect(200);
    expect(res.body).toMatchObject({ agent: { id: bot.agentId, name: "deploy-bot", status: "active" }, skills: [DEPLOY_SKILL], policy: { version: 1 } });
    expect(res.body.matrix).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ action: "deploy", resource: "staging", allow: true }),
        expect.objectContaining({ action: "deploy", resource: "production", allow: false, reasons: ["deploying to production requires a change approved by a human"] }),
      ]),
    );
    // No parameter can name another agent; an admin key is not an agent.
    expect((await s.http.get(`/v1/agent/permissions?agent=${bot.agentId}`).set({ Authorization: `Bearer ${token}` })).body.agent.id).toBe(bot.agentId);
    expect((await s.http.get("/v1/agent/permissions").set({ Authorization: `Bearer ${s.admin}` }).expect(403)).body.code).toBe("agent_only");
    await s.http.get("/v1/agent/permissions").expect(401);
    // A suspended agent sees that it may do nothing.
    await s.http.post(`/v1/agents/${bot.agentId}/suspend`).set({ Authorization: `Bearer ${s.admin}` }).send({ reason: "test" }).expect(200);
    const suspended = await s.http.get("/v1/agent/permissions").set({ Authorization: `Bearer ${token}` }).expect(200);
    expect(suspended.body.agent.status).toBe("suspended");
    expect(suspended.body.matrix.every((c: { allow: boolean }) => !c.allow)).toBe(true);
    await s.http.post(`/v1/agents/${bot.agentId}/reactivate`).set({ Authorization: `Bearer ${s.admin}` }).send({ reason: "test" }).expect(200);
  });
});
