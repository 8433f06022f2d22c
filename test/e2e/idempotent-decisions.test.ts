import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { accessToken, decisionRecords, DEPLOY_SKILL, registerDeployBot, type TestAgent } from "../support/agents";
import { failWrites, sql } from "../support/sql";
import { spawnReplica } from "../support/replicas";
import request from "supertest";
import { createChronStore } from "../../src/server";
import { IdempotencyKeyTaken } from "../../src/chron/chron-store";
import { seal, type DecisionContent } from "../../src/chron/record";

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
    const first = await decide({ ...staging, resource: "production" }, key).expect(200);
    expect(first.body.decision).toBe("approval_required");
    await s.restart();
    token = await accessToken(s, bot);
    const again = await decide({ ...staging, resource: "production" }, key).expect(200);
    expect(again.headers["idempotent-replayed"]).toBe("true");
    // From the record: the same decision, reasons, codes and approval (who may approve is in the approval itself).
    const { approval, ...rest } = first.body;
    expect(again.body).toEqual({ ...rest, approval: { id: approval.id, status: approval.status, expires_at: approval.expires_at, url: approval.url } });
    expect((await decide(staging, key).expect(409)).body.code).toBe("idempotency_key_reused");
    expect(await keyed(key)).toHaveLength(1);
    const [{ n }] = await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE kind = 'decision' AND content LIKE $1", [`%${key}%`]);
    expect(Number(n)).toBe(1);
  });

  test("another process on the database (a replica, a worker) knows every key: a retry there gets the first answer, recorded once, and another body is a 409", async () => {
    // The replica forgets keys after 1 s, so that it also shows what an expired key does.
    const replica = await spawnReplica(s, { CLAIIM_IDEMPOTENCY_TTL_SECONDS: "1" });
    const there = (body: object, key: string) => request(replica.base).post("/v1/decisions").set({ Authorization: `Bearer ${token}`, "Idempotency-Key": key }).send(body);
    try {
      // Decided on the replica, retried here: the retry's insert collides with the first record's key.
      const key = newKey();
      const first = await there(staging, key).expect(200);
      const retry = await decide(staging, key).expect(200);
      expect(retry.headers["idempotent-replayed"]).toBe("true");
      expect(retry.body).toEqual(first.body);
      expect((await decide({ ...staging, purpose: "another" }, key).expect(409)).body.code).toBe("idempotency_key_reused");
      expect(await keyed(key)).toHaveLength(1);

      // An approval asked under a key, retried on the other process: the same approval, asked once.
      const asking = newKey();
      const asked = await there({ ...staging, resource: "production" }, asking).expect(200);
      expect(asked.body.decision).toBe("approval_required");
      const askedAgain = await decide({ ...staging, resource: "production" }, asking).expect(200);
      expect(askedAgain.headers["idempotent-replayed"]).toBe("true");
      expect([askedAgain.body.decision_id, askedAgain.body.approval.id]).toEqual([asked.body.decision_id, asked.body.approval.id]);
      const [{ n: requested }] = await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM approvals WHERE agent_id = $1 AND request = (SELECT request FROM approvals WHERE id = $2)", [bot.agentId, asked.body.approval.id]);
      expect(Number(requested)).toBe(1);
      expect(await keyed(asking)).toHaveLength(1);

      // The same key sent to both processes at once: one decision, and every answer is it.
      const raced = newKey();
      const replies = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? there(staging, raced) : decide(staging, raced))));
      expect(replies.map((r) => r.status)).toEqual(Array(16).fill(200));
      expect(new Set(replies.map((r) => r.body.decision_id)).size).toBe(1);
      expect(replies.filter((r) => r.headers["idempotent-replayed"] !== "true")).toHaveLength(1);
      expect(await keyed(raced)).toHaveLength(1);

      // Older than the replica's TTL: the key binds nothing there any more, and the request is
      // decided as one sent without a key (the first record keeps it).
      const old = newKey();
      const before = await decide(staging, old).expect(200);
      await new Promise((r) => setTimeout(r, 1200));
      const late = await there({ ...staging, purpose: "a day later" }, old).expect(200);
      expect(late.headers["idempotent-replayed"]).toBeUndefined();
      expect(late.body.decision_id).not.toBe(before.body.decision_id);
      expect((await keyed(old)).map((r) => r.decision_id)).toEqual([before.body.decision_id]);
      const all = await decisionRecords(s, bot.agentId);
      expect(all.find((r) => r.decision_id === late.body.decision_id)).not.toHaveProperty("idempotency_key");
    } finally {
      await replica.stop();
    }
    expect((await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${s.admin}` }).expect(200)).body).toMatchObject({ valid: true });
  });

  test("the database refuses a second record of an agent's key, whichever way Chron appends (the driver alone, or with a change through Prisma), and says which index", async () => {
    const key = newKey();
    await decide(staging, key).expect(200);
    const [first] = await keyed(key);
    const store = createChronStore(s.claiim.db);
    const again = (n: number) => seal([{ ...(first as unknown as DecisionContent), decision_id: `again-${kind}-${n}` }], null);
    for (const [n, effect] of [[1, undefined], [2, async () => undefined]] as const) {
      const refused = await store.append((head) => seal([JSON.parse(again(n)[0].content) as DecisionContent], head, (h) => s.claiim.chronSigner.tag(h)), effect).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(IdempotencyKeyTaken);
    }
    expect(await keyed(key)).toHaveLength(1);
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
