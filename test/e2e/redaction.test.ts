import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { sql } from "../support/sql";
import { loadConfig } from "../../src/config";

const rules = [
  { path: "/purpose", op: "mask" },
  { path: "/input/request/purpose", op: "erase" },
  { path: "/on_behalf_of/subject", op: "mask", value: "customer" },
  { path: "/input/on_behalf_of", op: "erase" },
];

describe.each(databaseKinds())("redaction of Chron records on %s", (kind) => {
  let s: TestServer;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_REDACTION_RULES: JSON.stringify(rules) } });
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("records state what was erased and masked, never hold the secret, and still verify", async () => {
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "support-bot", owner: "alice@acme.example", skills: [{ name: "customer-support", version: "2.0.0" }] }).expect(201)).body;
    const token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    const body = {
      action: "draft_response",
      resource: "ticket/77",
      purpose: "answer jane.doe@customer.example about her card ending 4242",
      skill: { name: "customer-support", version: "2.0.0" },
      on_behalf_of: { subject: "jane.doe@customer.example" },
    };
    const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(body).expect(200);
    expect(res.body.decision).toBe("allow");
    const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [res.body.decision_id]);
    const record = JSON.parse(row.content as string);
    expect(record).toMatchObject({
      purpose: "**REDACTED**",
      on_behalf_of: { subject: "customer" },
      erased: ["/input/request/purpose", "/input/on_behalf_of"],
      masked: ["/purpose", "/on_behalf_of/subject"],
      resource: "ticket/77",
    });
    expect(record.input.request).not.toHaveProperty("purpose");
    expect(row.content).not.toMatch(/jane\.doe|card ending/);
    expect((await s.http.get("/v1/chron/verify").set(admin())).body.valid).toBe(true);
  });

  test("bad rules stop CLAIIM from starting, with the reason", () => {
    expect(() => loadConfig({ CLAIIM_REDACTION_RULES: '[{"path": "/decision", "op": "erase"}]' })).toThrow(/redaction rule 0\.path/);
    expect(() => loadConfig({ CLAIIM_REDACTION_RULES: "not json" })).toThrow(/not valid JSON/);
  });
});
