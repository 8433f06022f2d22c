import { PassThrough } from "node:stream";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { asDatabaseOwner, sql } from "../support/sql";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

/** Sets up acme, Alice and deploy-bot, and returns deploy-bot's token. */
async function deployBot(s: TestServer): Promise<{ agentId: string; token: string; credentialId: string }> {
  const admin = { Authorization: `Bearer ${s.admin}` };
  await s.http.post("/v1/organizations").set(admin).send({ slug: "acme", name: "Acme" }).expect(201);
  await s.http.post("/v1/humans").set(admin).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
  const agent = await s.http.post("/v1/agents").set(admin).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [staging.skill] }).expect(201);
  const cred = await s.http.post(`/v1/agents/${agent.body.id}/credentials`).set(admin).send({}).expect(201);
  return { agentId: agent.body.id, token: cred.body.token, credentialId: cred.body.credential_id };
}

describe.each(databaseKinds())("failing closed on %s", (kind) => {
  test("a policy that fails while evaluating gives a recorded deny with the error as reason", async () => {
    const s = await startTestServer(kind);
    try {
      const admin = { Authorization: `Bearer ${s.admin}` };
      const { token } = await deployBot(s);
      // Two complete definitions that both hold: OPA reports a conflict at evaluation time.
      const conflicting = [
        "package claiim",
        "",
        'decision := {"allow": true, "reasons": ["one"]} if input.request.action',
        'decision := {"allow": true, "reasons": ["two"]} if input.request.resource',
        "",
      ].join("\n");
      await s.http.post("/v1/policies").set(admin).send({ files: { "claiim/decision.rego": conflicting }, message: "conflict", activate: true }).expect(201);
      const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
      expect(res.body).toMatchObject({ decision: "deny", allow: false, policy: { version: 2 } });
      expect(res.body.reasons[0]).toMatch(/^policy evaluation failed: /);
      const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [res.body.decision_id]);
      expect(JSON.parse(row.content as string)).toMatchObject({ decision: "deny", reasons: res.body.reasons });
    } finally {
      await s.stop();
    }
  });

  test("a stored bundle tampered with while CLAIIM was down is not loaded: not ready, and every decision is a recorded deny", async () => {
    const s = await startTestServer(kind);
    try {
      const { token } = await deployBot(s);
      await sql(s.claiim.db, "UPDATE policy_bundles SET digest = $1 WHERE version = 1", [`sha256:${"1".repeat(64)}`]);
      await s.restart();
      const ready = await s.http.get("/readyz").expect(503);
      expect(ready.body).toMatchObject({ code: "not_ready", detail: "no policy bundle is active" });
      const status = await s.http.get("/v1/policies/status").set({ Authorization: `Bearer ${s.admin}` }).expect(200);
      expect(status.body).toMatchObject({ active_version: null, errors: [{ message: expect.stringMatching(/content digest/) }] });
      const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
      expect(res.body).toMatchObject({ decision: "deny", reasons: [expect.stringMatching(/^no policy is active/)], policy: { version: null } });
      expect((await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${s.admin}` })).body).toMatchObject({ valid: true });
    } finally {
      await s.stop();
    }
  });

  test("CLAIIM refuses to start on a Chron whose stored records no longer rebuild the signed Merkle root, naming the first bad record", async () => {
    const s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "3" } });
    try {
      const { token } = await deployBot(s);
      for (let i = 0; i < 6; i++) await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(200);
      await s.claiim.checkpointer.idle();
      const [last] = (await sql(s.claiim.db, "SELECT seq FROM chron_checkpoints ORDER BY seq DESC LIMIT 1")) as { seq: number }[];
      await asDatabaseOwner(s.claiim.db, () => sql(s.claiim.db, "UPDATE chron_records SET hash = $1 WHERE seq = $2", ["f".repeat(64), Number(last.seq) - 1]));
      await expect(s.restart()).rejects.toThrow(new RegExp(`^Chron does not verify, so CLAIIM will not start: record ${Number(last.seq) - 1}: hash mismatch`));
    } finally {
      await s.stop();
    }
  });

  test("tokens and secrets never reach the logs, and every line of a request carries its id", async () => {
    const stream = new PassThrough();
    let text = "";
    stream.on("data", (c: Buffer) => (text += c.toString()));
    const s = await startTestServer(kind, { logStream: stream });
    try {
      const { agentId, token, credentialId } = await deployBot(s);
      await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).set("X-Request-Id", "req-42").send(staging).expect(200);
      await s.http.delete(`/v1/agents/${agentId}/credentials/${credentialId}`).set({ Authorization: `Bearer ${s.admin}` }).set("X-Request-Id", "req-43").expect(200);
      await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(staging).expect(401);
      await s.http.get("/v1/agents").set({ Authorization: `Bearer ${s.admin}x` }).expect(401);
      await new Promise((r) => setImmediate(r));
      const lines = text.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.length).toBeGreaterThan(8);
      const adminSecret = s.admin.slice(s.admin.indexOf("_", "claiim_".length) + 1);
      expect(adminSecret.length).toBeGreaterThan(40);
      for (const secret of [s.admin, token, token.split(".")[2], adminSecret]) expect(text).not.toContain(secret);
      expect(lines).toContainEqual(expect.objectContaining({ message: "request", request_id: "req-42", method: "POST", path: "/v1/decisions", status: 200 }));
      expect(lines).toContainEqual(expect.objectContaining({ message: "agent credential revoked", request_id: "req-43" }));
      expect(lines.filter((l) => l.message === "request").every((l) => typeof l.request_id === "string")).toBe(true);
    } finally {
      await s.stop();
    }
  });
});
