import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { FakeIdp } from "../support/fake-idp";

describe.each(databaseKinds())("humans signed in with the organisation's identity provider, on %s", (kind) => {
  let s: TestServer;
  const idp = new FakeIdp();
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });

  beforeAll(async () => {
    await idp.start();
    s = await startTestServer(kind, {
      env: {
        CLAIIM_OIDC_ISSUER: "https://idp.acme.example",
        CLAIIM_OIDC_AUDIENCE: "claiim-api",
        CLAIIM_OIDC_JWKS_URL: idp.url,
        CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS: "0",
        CLAIIM_CLOCK_SKEW_SECONDS: "30",
      },
    });
    for (const slug of ["acme", "globex"]) await s.http.post("/v1/organizations").set(bearer(s.admin)).send({ slug, name: slug }).expect(201);
  });
  afterAll(async () => {
    await s?.stop();
    await idp.stop();
  });

  test("a manager's token lets them act in their organisation, and Chron names them", async () => {
    const t = await idp.sign({ name: "Alice Ops", claiim_roles: ["agent_manager"], claiim_org: "acme" });
    const human = await s.http.post("/v1/humans").set(bearer(t)).send({ organization: "acme", name: "Bo", email: "bo@acme.example" }).expect(201);
    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(bearer(s.admin))).body.records;
    expect(events.find((e: { subject: { id: string } }) => e.subject.id === human.body.id)).toMatchObject({
      type: "human.registered",
      actor: { type: "human", id: "https://idp.acme.example#00u-alice", name: "Alice Ops" },
    });
    await s.http.post("/v1/humans").set(bearer(t)).send({ organization: "globex", name: "Mo", email: "mo@globex.example" }).expect(404);
    await s.http.get("/v1/chron/records").set(bearer(t)).expect(403);
    await s.http.post("/v1/organizations").set(bearer(t)).send({ slug: "x", name: "X" }).expect(403);
  });

  test("roles come from the claim, as an array or a space-separated string; unknown roles count for nothing", async () => {
    const auditor = await idp.sign({ claiim_roles: "auditor viewer", claiim_org: "*" });
    await s.http.get("/v1/chron/verify").set(bearer(auditor)).expect(200);
    await s.http.post("/v1/humans").set(bearer(auditor)).send({ organization: "acme", name: "X", email: "x@acme.example" }).expect(403);
    const nobody = await idp.sign({ claiim_roles: ["superuser"], claiim_org: "acme" });
    await s.http.get("/v1/agents").set(bearer(nobody)).expect(403);
  });

  test("wrong audience, wrong issuer, expiry, missing or unknown organisation are refused specifically", async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: [Promise<string>, string][] = [
      [idp.sign({ claiim_roles: ["admin"], claiim_org: "acme" }, { aud: "someone-else" }), "oidc_audience_invalid"],
      [idp.sign({ claiim_roles: ["admin"], claiim_org: "acme" }, { exp: now - 120 }), "oidc_token_expired"],
      [idp.sign({ claiim_roles: ["admin"] }), "oidc_org_missing"],
      [idp.sign({ claiim_roles: ["admin"], claiim_org: "initech" }), "oidc_org_unknown"],
    ];
    for (const [t, code] of cases) expect([code, (await s.http.get("/v1/agents").set(bearer(await t)).expect(401)).body.code]).toEqual([code, code]);
    // A token from another issuer is not the provider's: it is checked as a CLAIIM token, and fails.
    const foreign = await idp.sign({ claiim_roles: ["admin"], claiim_org: "acme" }, { iss: "https://evil.example" });
    expect((await s.http.get("/v1/agents").set(bearer(foreign)).expect(401)).body.code).toBe("token_invalid");
  });

  test("the provider's key rotation reaches CLAIIM: the JWKS is cached, and fetched again for an unknown kid", async () => {
    const before = idp.fetches;
    const t1 = await idp.sign({ claiim_roles: ["auditor"], claiim_org: "acme" });
    await s.http.get("/v1/agents").set(bearer(t1)).expect(200);
    await s.http.get("/v1/agents").set(bearer(t1)).expect(200);
    expect(idp.fetches).toBe(before);
    await idp.rotate();
    const t2 = await idp.sign({ claiim_roles: ["auditor"], claiim_org: "acme" });
    await s.http.get("/v1/agents").set(bearer(t2)).expect(200);
    expect(idp.fetches).toBe(before + 1);
    expect((await s.http.get("/v1/agents").set(bearer(t1)).expect(401)).body.code).toBe("oidc_key_unknown");
  });

  test("when the provider's keys cannot be fetched, nobody is let in", async () => {
    idp.up = false;
    try {
      await idp.rotate();
      const t = await idp.sign({ claiim_roles: ["admin"], claiim_org: "*" });
      const res = await s.http.get("/v1/agents").set(bearer(t));
      expect([res.status, res.body.code]).toEqual([503, "oidc_unavailable"]);
    } finally {
      idp.up = true;
    }
  });
});
