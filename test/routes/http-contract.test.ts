import { fakeApp, type FakeApp } from "../support/fake-core";
import { ALL, TESTER } from "../support/recorder";

describe("HTTP contract (routes on fake stores)", () => {
  let app: FakeApp;
  let auditor: string;
  let manager: string;
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

  beforeAll(async () => {
    app = await fakeApp();
    auditor = (await app.core.apiKeys.createApiKey({ name: "audit", role: "auditor", organization: null, expiresAt: null }, TESTER, ALL)).secret;
    manager = (await app.core.apiKeys.createApiKey({ name: "ops", role: "agent_manager", organization: null, expiresAt: null }, TESTER, ALL)).secret;
  });

  test("unknown routes are problems too", async () => {
    const res = await app.http.get("/v1/nothing").expect(404);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ type: "urn:claiim:problem:route_not_found", status: 404, code: "route_not_found", instance: "/v1/nothing" });
    expect(res.body.request_id).toBe(res.headers["x-request-id"]);
  });

  test("a caller's request id is echoed when well-formed, replaced when not", async () => {
    expect((await app.http.get("/healthz").set("X-Request-Id", "abc-123")).headers["x-request-id"]).toBe("abc-123");
    expect((await app.http.get("/healthz").set("X-Request-Id", "bad id with spaces &/;")).headers["x-request-id"]).not.toContain("bad");
  });

  test("401s say why, and carry WWW-Authenticate", async () => {
    const missing = await app.http.get("/v1/agents").expect(401);
    expect(missing.headers["www-authenticate"]).toMatch(/^Bearer/);
    expect(missing.body.code).toBe("credential_missing");
    expect((await app.http.get("/v1/agents").set({ Authorization: "Basic abc" }).expect(401)).body.code).toBe("credential_missing");
    expect((await app.http.get("/v1/agents").set(bearer("claiim_x_y")).expect(401)).body.code).toBe("api_key_invalid");
  });

  test("roles: each route admits admin and its declared roles only", async () => {
    await app.http.get("/v1/agents").set(bearer(auditor)).expect(200);
    const refused = await app.http.post("/v1/organizations").set(bearer(auditor)).send({ slug: "x", name: "X" }).expect(403);
    expect(refused.body).toMatchObject({ code: "role_not_allowed" });
    await app.http.post("/v1/organizations").set(bearer(manager)).send({ slug: "x", name: "X" }).expect(403);
    await app.http.post("/v1/organizations").set(bearer(app.admin)).send({ slug: "x", name: "X" }).expect(201);
    await app.http.post("/v1/humans").set(bearer(manager)).send({ organization: "x", name: "Bo", email: "bo@x.example" }).expect(201);
    await app.http.post("/v1/policies").set(bearer(manager)).send({ files: {}, message: "m" }).expect(403);
    await app.http.get("/v1/chron/verify").set(bearer(manager)).expect(403);
    await app.http.get("/v1/chron/verify").set(bearer(auditor)).expect(200);
  });

  test("revoked and expired API keys are refused", async () => {
    const shortLived = await app.core.apiKeys.createApiKey({ name: "old", role: "auditor", organization: null, expiresAt: new Date(Date.now() + 1000) }, TESTER, ALL);
    const spy = jest.spyOn(Date, "now").mockReturnValue(Date.now() + 2000);
    try {
      expect((await app.http.get("/v1/agents").set(bearer(shortLived.secret)).expect(401)).body.code).toBe("api_key_expired");
    } finally {
      spy.mockRestore();
    }
    const key = app.stores.identity.apiKeys.find((k) => k.id === shortLived.key.id)!;
    expect(key.secretHash).not.toContain(shortLived.secret);
    await app.http.delete(`/v1/api-keys/${shortLived.key.id}`).set(bearer(app.admin)).expect(200);
    expect((await app.http.get("/v1/agents").set(bearer(shortLived.secret)).expect(401)).body.code).toBe("api_key_revoked");
  });

  test("validation names every offending field", async () => {
    const res = await app.http.post("/v1/agents").set(bearer(app.admin)).send({ organization: "Not A Slug", name: "", skills: [], color: "red" }).expect(400);
    const paths = res.body.errors.map((e: { path: string }) => e.path).sort();
    expect(paths).toEqual(["color", "name", "organization", "owner", "skills"].sort());
    expect(res.body.detail).toMatch(/^invalid request body: /);
    const query = await app.http.get("/v1/chron/records?limit=0&extra=1").set(bearer(auditor)).expect(400);
    expect(query.body.errors.map((e: { path: string }) => e.path).sort()).toEqual(["extra", "limit"]);
    const param = await app.http.get("/v1/agents/not-a-uuid").set(bearer(auditor)).expect(400);
    expect(param.body.errors[0].path).toBe("id");
  });

  test("unknown references are 404 problems with a stable code", async () => {
    expect((await app.http.get("/v1/agents/00000000-0000-4000-8000-000000000000").set(bearer(auditor)).expect(404)).body.code).toBe("agent_not_found");
    expect((await app.http.post("/v1/humans").set(bearer(app.admin)).send({ organization: "nope", name: "N", email: "n@x.example" }).expect(404)).body.code).toBe("organization_not_found");
    expect((await app.http.post("/v1/policies/99/activate").set(bearer(app.admin)).expect(404)).body.code).toBe("policy_version_not_found");
  });

  test("a policy upload over the limit is 413, and bad paths are refused before OPA runs", async () => {
    const bad = await app.http.post("/v1/policies").set(bearer(app.admin)).send({ files: { "../escape.rego": "package x", "claiim/d.rego": "package claiim" }, message: "m" }).expect(400);
    expect(bad.body).toMatchObject({ code: "policy_path_invalid", errors: [{ path: "files.../escape.rego" }] });
    const empty = await app.http.post("/v1/policies").set(bearer(app.admin)).send({ files: { "data.json": "{}" }, message: "m" }).expect(400);
    expect(empty.body.code).toBe("policy_empty");
    const huge = await app.http.post("/v1/policies").set(bearer(app.admin)).send({ files: { "a.rego": "#".repeat(5 * 1024 * 1024) }, message: "m" }).expect(413);
    expect(huge.body.code).toBe("payload_too_large");
  });

  test("an unexpected failure is a 500 problem without a stack trace", async () => {
    const spy = jest.spyOn(app.core.verifier, "verify").mockRejectedValueOnce(new Error("secret internals at /srv/x.ts:1"));
    const res = await app.http.get("/v1/chron/verify").set(bearer(auditor)).expect(500);
    expect(res.body).toMatchObject({ code: "internal_error", status: 500 });
    expect(JSON.stringify(res.body)).not.toMatch(/secret internals|x\.ts/);
    spy.mockRestore();
  });

  test("a store that cannot be reached is a 503, not a 500", async () => {
    const err = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const spy = jest.spyOn(app.stores.identity, "createOrganization").mockRejectedValueOnce(err);
    const res = await app.http.post("/v1/organizations").set(bearer(app.admin)).send({ slug: "down", name: "Down" }).expect(503);
    expect(res.body.code).toBe("database_unavailable");
    expect(app.core.directory.listOrganizations(ALL).map((o) => o.slug)).not.toContain("down");
    spy.mockRestore();
  });

  test("the OpenAPI document lists every route with its access", async () => {
    const doc = (await app.http.get("/openapi.json").expect(200)).body;
    for (const r of app.core.routes) {
      const op = doc.paths[r.path]?.[r.method];
      expect(op).toBeDefined();
      expect(op.description).toMatch(/^Access: /);
    }
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });
});
