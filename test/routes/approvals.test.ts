import { fakeApp, type FakeApp } from "../support/fake-core";

const production = { action: "deploy", resource: "production", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" } };
const NOWHERE = "00000000-0000-4000-8000-000000000000";

describe("approval routes (on fake stores)", () => {
  let app: FakeApp;
  let token: string;
  let otherToken: string;
  let approver: string;
  let auditor: string;
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

  beforeAll(async () => {
    app = await fakeApp();
    const admin = bearer(app.admin);
    await app.http.post("/v1/organizations").set(admin).send({ slug: "acme", name: "Acme" }).expect(201);
    await app.http.post("/v1/humans").set(admin).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    for (const name of ["deploy-bot", "other-bot"]) {
      const agent = (await app.http.post("/v1/agents").set(admin).send({ organization: "acme", name, owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
      const t = (await app.http.post(`/v1/agents/${agent.id}/credentials`).set(admin).send({}).expect(201)).body.token;
      if (name === "deploy-bot") token = t;
      else otherToken = t;
    }
    approver = (await app.http.post("/v1/api-keys").set(admin).send({ name: "chat bridge", role: "approver", organization: "acme" }).expect(201)).body.secret;
    auditor = (await app.http.post("/v1/api-keys").set(admin).send({ name: "audit", role: "auditor", organization: "acme" }).expect(201)).body.secret;
  });
  afterAll(async () => {
    await app.core.approvals.stop();
  });

  test("an approver key must be confined to one organisation", async () => {
    const res = await app.http.post("/v1/api-keys").set(bearer(app.admin)).send({ name: "everywhere", role: "approver" }).expect(400);
    expect(res.body).toMatchObject({ code: "approver_key_needs_organization", errors: [{ path: "organization" }] });
  });

  test("the whole round: approval_required, read by the agent, approved by a relaying key, allowed once", async () => {
    const asked = (await app.http.post("/v1/decisions").set(bearer(token)).send(production).expect(200)).body;
    expect(asked).toMatchObject({ decision: "approval_required", allow: false, reason_codes: ["approval_required"], approval: { status: "pending" } });
    const url = new URL(asked.approval.url).pathname;
    expect(url).toBe(`/v1/approvals/${asked.approval.id}`);
    const seen = (await app.http.get(url).set(bearer(token)).expect(200)).body;
    expect(seen).toMatchObject({
      id: asked.approval.id,
      status: "pending",
      organization: "acme",
      agent: { name: "deploy-bot" },
      request: { ...production, on_behalf_of: null },
      reasons: ["deploying to production requires a change approved by a human"],
      approvers: { accountable_human: { email: "alice@acme.example" } },
      decision_id: asked.decision_id,
      webhook: { state: "none", attempts: 0 },
      approve_url: expect.stringMatching(/\/approve$/),
    });
    await app.http.get(url).set(bearer(otherToken)).expect(404);
    expect((await app.http.post(`${url}/approve`).set(bearer(token)).send({ reason: "me" }).expect(403)).body.code).toBe("agent_not_allowed");
    expect((await app.http.post(`${url}/approve`).set(bearer(auditor)).send({ reason: "me" }).expect(403)).body.code).toBe("role_not_allowed");
    expect((await app.http.post(`${url}/approve`).set(bearer(approver)).send({ reason: "by myself" }).expect(403)).body.code).toBe("approver_not_allowed");

    const approved = (await app.http.post(`${url}/approve`).set(bearer(approver)).send({ reason: "CHG-7, Alice said yes in chat", on_behalf_of: "Alice@acme.example" }).expect(200)).body;
    expect(approved).toMatchObject({ status: "approved", decided_by: { type: "api_key", name: "chat bridge", human: { email: "alice@acme.example" } }, decision_reason: "CHG-7, Alice said yes in chat" });
    expect((await app.http.post(`${url}/reject`).set(bearer(approver)).send({ reason: "no", on_behalf_of: "alice@acme.example" }).expect(409)).body).toMatchObject({ code: "approval_closed", status: 409, approval_status: "approved" });

    const used = (await app.http.post("/v1/decisions").set(bearer(token)).send({ ...production, approval_id: asked.approval.id }).expect(200)).body;
    expect(used).toMatchObject({ decision: "allow", allow: true, reason_codes: ["approval_granted"], approval: { status: "used", approved_by: { human: { email: "alice@acme.example" } } } });
    const again = (await app.http.post("/v1/decisions").set(bearer(token)).send({ ...production, approval_id: asked.approval.id }).expect(200)).body;
    expect(again).toMatchObject({ decision: "deny", reason_codes: ["approval_used"] });

    const list = (await app.http.get("/v1/approvals?status=used").set(bearer(auditor)).expect(200)).body.approvals;
    expect(list.map((a: { id: string }) => a.id)).toEqual([asked.approval.id]);
    expect((await app.http.get("/v1/approvals").set(bearer(otherToken)).expect(200)).body.approvals).toEqual([]);
  });

  test("bad input is a 400 problem naming the field; unknown approvals are 404", async () => {
    const admin = bearer(app.admin);
    expect((await app.http.get("/v1/approvals/not-a-uuid").set(admin).expect(400)).body.errors[0].path).toBe("id");
    expect((await app.http.get(`/v1/approvals/${NOWHERE}`).set(admin).expect(404)).body.code).toBe("approval_not_found");
    expect((await app.http.get(`/v1/approvals/${NOWHERE}?wait=61`).set(admin).expect(400)).body.errors[0].path).toBe("wait");
    expect((await app.http.get("/v1/approvals?status=maybe&approver=nobody").set(admin).expect(400)).body.errors.map((e: { path: string }) => e.path).sort()).toEqual(["approver", "status"]);
    expect((await app.http.post(`/v1/approvals/${NOWHERE}/approve`).set(bearer(approver)).send({}).expect(400)).body.errors[0].path).toBe("reason");
    expect((await app.http.post(`/v1/approvals/${NOWHERE}/approve`).set(bearer(approver)).send({ reason: "x", on_behalf_of: "not an email" }).expect(400)).body.errors[0].path).toBe("on_behalf_of");
    expect((await app.http.post(`/v1/approvals/${NOWHERE}/reject`).set(bearer(approver)).send({ reason: "x", extra: 1 }).expect(400)).body.errors[0].path).toBe("extra");
    expect((await app.http.post(`/v1/approvals/${NOWHERE}/reject`).set(bearer(approver)).send({ reason: "x" }).expect(404)).body.code).toBe("approval_not_found");
    const badId = await app.http.post("/v1/decisions").set(bearer(token)).send({ ...production, approval_id: "42" }).expect(400);
    expect(badId.body.errors[0].path).toBe("approval_id");
  });

  test("OpenAPI documents the approval routes, the third outcome and the reason codes", async () => {
    const doc = (await app.http.get("/openapi.json").expect(200)).body;
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/approvals", "/v1/approvals/{id}", "/v1/approvals/{id}/approve", "/v1/approvals/{id}/reject"]));
    expect(doc.paths["/v1/approvals/{id}/approve"].post.description).toMatch(/approver.*any signed-in human/);
    expect(doc.paths["/v1/approvals/{id}"].get.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(["id", "wait"]));
    const response = doc.components.schemas.DecisionResponse;
    expect(response.properties.decision.enum).toEqual(["allow", "deny", "approval_required"]);
    expect(response.properties.reason_codes).toMatchObject({ type: "array" });
    expect(doc.components.schemas.DecisionRequest.properties.approval_id).toMatchObject({ type: "string", format: "uuid" });
    expect(doc.components.schemas.Approval.properties.webhook).toBeDefined();
  });
});
