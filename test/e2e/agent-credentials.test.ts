import { exportJWK, generateKeyPair, SignJWT, type KeyLike } from "jose";
import jwt from "jsonwebtoken";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { sql } from "../support/sql";

const skill = { name: "deploy", version: "1.2.0" };
const staging = { action: "deploy", resource: "staging", purpose: "release", skill };
const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

describe.each(databaseKinds())("agent credentials on %s", (kind) => {
  let s: TestServer;
  let agentId: string;
  let aliceId: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const token = (fields: Record<string, string>, headers: Record<string, string> = {}) =>
    s.http.post("/oauth/token").set("Content-Type", "application/x-www-form-urlencoded").set(headers).send(form({ grant_type: "client_credentials", ...fields }));
  const decide = (t: string, body: object = staging) => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${t}` }).send(body);

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_ACCESS_TOKEN_TTL_SECONDS: "120", CLAIIM_CLOCK_SKEW_SECONDS: "30", CLAIIM_PUBLIC_URL: "https://claiim.acme.example" } });
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    aliceId = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201)).body.id;
    agentId = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: aliceId, skills: [skill] }).expect(201)).body.id;
  });
  afterAll(async () => {
    await s?.stop();
  });

  describe("client_secret", () => {
    let clientId: string;
    let secret: string;

    test("the secret is shown once and stored hashed; tokens come by HTTP Basic or in the body", async () => {
      const res = await s.http.post(`/v1/agents/${agentId}/clients`).set(admin()).send({ method: "client_secret" }).expect(201);
      ({ client_id: clientId, client_secret: secret } = res.body);
      expect(res.body).toMatchObject({ agent_id: agentId, method: "client_secret", public_jwk: null, revoked_at: null });
      expect(JSON.stringify(await sql(s.claiim.db, "SELECT * FROM agent_clients"))).not.toContain(secret);
      expect((await s.http.get(`/v1/agents/${agentId}/clients`).set(admin()).expect(200)).body.clients[0]).not.toHaveProperty("client_secret");

      const basic = await token({}, { Authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString("base64")}` }).expect(200);
      expect(basic.headers["cache-control"]).toBe("no-store");
      expect(basic.body).toMatchObject({ token_type: "Bearer", expires_in: 120 });
      const inBody = await token({ client_id: clientId, client_secret: secret }).expect(200);
      const claims = jwt.decode(inBody.body.access_token, { complete: true })!;
      const payload = claims.payload as jwt.JwtPayload;
      expect(claims.header).toMatchObject({ alg: "ES256", kid: expect.any(String) });
      expect(payload).toMatchObject({ iss: "claiim", aud: "claiim", sub: agentId, cid: clientId, jti: expect.any(String) });
      expect(payload.exp! - payload.iat!).toBe(120);

      const decided = await decide(inBody.body.access_token).expect(200);
      expect(decided.body.decision).toBe("allow");
      const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [decided.body.decision_id]);
      expect(JSON.parse(row.content as string).requested_by).toEqual({ credential_id: clientId });
    });

    test("wrong secrets, unknown clients and other grants are refused with OAuth errors", async () => {
      const wrong = await token({ client_id: clientId, client_secret: "nope" }).expect(401);
      expect(wrong.body).toMatchObject({ code: "client_secret_invalid", error: "invalid_client" });
      expect((await token({ client_id: "claiim-client-unknown", client_secret: "x" }).expect(401)).body.code).toBe("client_unknown");
      expect((await token({}).expect(401)).body.code).toBe("client_authentication_missing");
      const grant = await token({ grant_type: "password", client_id: clientId, client_secret: secret }).expect(400);
      expect(grant.body).toMatchObject({ code: "grant_type_unsupported", error: "unsupported_grant_type" });
      const json = await s.http.post("/oauth/token").send({ grant_type: "client_credentials" }).expect(400);
      expect(json.body.code).toBe("content_type_invalid");
    });

    test("revoking the client stops its access tokens at the next decision", async () => {
      const t = (await token({ client_id: clientId, client_secret: secret }).expect(200)).body.access_token;
      await decide(t).expect(200);
      await s.http.delete(`/v1/agents/${agentId}/clients/${clientId}`).set(admin()).expect(200);
      expect((await decide(t).expect(401)).body.code).toBe("credential_revoked");
      expect((await token({ client_id: clientId, client_secret: secret }).expect(401)).body.code).toBe("client_revoked");
    });
  });

  describe("private_key_jwt (RFC 7523)", () => {
    let clientId: string;
    let privateKey: KeyLike;
    const assertion = (over: { aud?: string; iat?: number; exp?: number; jti?: string; key?: KeyLike } = {}) => {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ jti: over.jti ?? randomUUID() })
        .setProtectedHeader({ alg: "ES256" })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(over.aud ?? "https://claiim.acme.example/oauth/token")
        .setIssuedAt(over.iat ?? now)
        .setExpirationTime(over.exp ?? now + 60)
        .sign(over.key ?? privateKey);
    };
    const withAssertion = (a: string) => token({ client_assertion_type: JWT_BEARER, client_assertion: a });

    test("malformed or private JWKs are refused with a specific code", async () => {
      const { privateKey: pk } = await generateKeyPair("ES256", { extractable: true });
      const full = await exportJWK(pk);
      const rsa1024 = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey.export({ format: "jwk" });
      for (const jwk of [full, rsa1024, { kty: "EC", crv: "P-256", x: "bad", y: "bad" }, { kty: "oct", k: "c2VjcmV0" }]) {
        const res = await s.http.post(`/v1/agents/${agentId}/clients`).set(admin()).send({ method: "private_key_jwt", jwk }).expect(400);
        expect(res.body.code).toBe("jwk_invalid");
      }
      expect((await s.http.post(`/v1/agents/${agentId}/clients`).set(admin()).send({ method: "private_key_jwt" }).expect(400)).body.code).toBe("jwk_missing");
    });

    test("a signed assertion gets a token; CLAIIM holds no secret for the client", async () => {
      const pair = await generateKeyPair("ES256", { extractable: true });
      privateKey = pair.privateKey;
      const jwk = await exportJWK(pair.publicKey);
      const res = await s.http.post(`/v1/agents/${agentId}/clients`).set(admin()).send({ method: "private_key_jwt", jwk }).expect(201);
      clientId = res.body.client_id;
      expect(res.body).not.toHaveProperty("client_secret");
      expect(res.body.public_jwk).toMatchObject({ kty: "EC", crv: "P-256", x: jwk.x, alg: "ES256" });
      const [row] = await sql(s.claiim.db, "SELECT secret_hash FROM agent_clients WHERE id = $1", [clientId]);
      expect(row.secret_hash).toBeNull();
      const t = (await withAssertion(await assertion()).expect(200)).body.access_token;
      expect((await decide(t).expect(200)).body.decision).toBe("allow");
      expect((await withAssertion(await assertion({ aud: "claiim" })).expect(200)).body.token_type).toBe("Bearer");
    });

    test("each assertion works once, even across a restart", async () => {
      const a = await assertion();
      await withAssertion(a).expect(200);
      const again = await withAssertion(a).expect(401);
      expect(again.body).toMatchObject({ code: "assertion_replayed", error: "invalid_client" });
      const b = await assertion();
      await withAssertion(b).expect(200);
      await s.restart();
      expect((await withAssertion(b).expect(401)).body.code).toBe("assertion_replayed");
    });

    test("wrong audience, expiry, clock skew, long lifetimes and foreign keys are refused specifically", async () => {
      const now = Math.floor(Date.now() / 1000);
      const other = (await generateKeyPair("ES256")).privateKey;
      const cases: [Promise<string>, string][] = [
        [assertion({ aud: "https://elsewhere.example/token" }), "assertion_audience_invalid"],
        [assertion({ iat: now - 600, exp: now - 120 }), "assertion_expired"],
        [assertion({ iat: now + 300, exp: now + 360 }), "assertion_clock_skew"],
        [assertion({ exp: now + 3600 }), "assertion_lifetime_too_long"],
        [assertion({ key: other }), "client_assertion_invalid"],
      ];
      for (const [a, code] of cases) {
        const res = await withAssertion(await a).expect(401);
        expect([code, res.body.code, res.body.error]).toEqual([code, code, "invalid_client"]);
      }
      // Within the tolerated skew (30 s here), a slightly early iat is fine.
      await withAssertion(await assertion({ iat: now + 10 })).expect(200);
      expect((await token({ client_assertion_type: "urn:other", client_assertion: "x" }).expect(400)).body.code).toBe("client_assertion_type_invalid");
    });

    test("on behalf of a user: the token says so (act), the policy sees it, and Chron records it next to the accountable human", async () => {
      const res = await token({ client_assertion_type: JWT_BEARER, client_assertion: await assertion(), on_behalf_of: "carol@customer.example" }).expect(200);
      const payload = jwt.decode(res.body.access_token) as jwt.JwtPayload;
      expect(payload).toMatchObject({ sub: "carol@customer.example", act: { sub: agentId } });
      const decided = (await decide(res.body.access_token).expect(200)).body;
      const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [decided.decision_id]);
      const record = JSON.parse(row.content as string);
      expect(record).toMatchObject({ on_behalf_of: { subject: "carol@customer.example" }, accountable_human: { id: aliceId }, agent: { id: agentId } });
      expect(record.input.on_behalf_of).toEqual({ subject: "carol@customer.example" });
      const mismatch = await decide(res.body.access_token, { ...staging, on_behalf_of: { subject: "mallory@x.example" } }).expect(400);
      expect(mismatch.body.code).toBe("on_behalf_of_mismatch");
    });

    test("suspension stops existing tokens at the next decision, and no new ones are issued", async () => {
      const t = (await withAssertion(await assertion()).expect(200)).body.access_token;
      await s.http.post(`/v1/agents/${agentId}/suspend`).set(admin()).send({ reason: "incident" }).expect(200);
      expect((await decide(t).expect(200)).body).toMatchObject({ decision: "deny", reasons: ['agent "deploy-bot" is suspended, not active'] });
      expect((await withAssertion(await assertion()).expect(400)).body).toMatchObject({ code: "agent_not_active", error: "invalid_grant" });
      await s.http.post(`/v1/agents/${agentId}/reactivate`).set(admin()).send({ reason: "resolved" }).expect(200);
    });

    test("issued tokens are recorded in Chron, without the token", async () => {
      const records = (await s.http.get(`/v1/chron/records?kind=event&agent=${agentId}&limit=1000`).set(admin()).expect(200)).body.records as { type: string; subject: { id: string } }[];
      const issued = records.filter((r) => r.type === "token.issued");
      expect(issued.length).toBeGreaterThanOrEqual(6);
      expect(records.some((r) => r.type === "client.registered" && r.subject.id === clientId)).toBe(true);
      expect(JSON.stringify(records)).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\.eyJ/);
    });
  });

  describe("signing-key rotation", () => {
    test("the previous key keeps verifying for the overlap, then stops; the JWKS follows", async () => {
      const old = (await s.http.post(`/v1/agents/${agentId}/credentials`).set(admin()).send({}).expect(201)).body;
      const before = ((await s.http.get("/.well-known/jwks.json")).body.keys as { kid: string }[]).map((k) => k.kid);
      expect(before).toContain(old.kid);

      const rotated = (await s.http.post("/v1/signing-keys/rotate").set(admin()).send({ overlap_seconds: 3600, reason: "quarterly" }).expect(200)).body;
      expect(rotated.previous.kid).toBe(old.kid);
      expect((await s.http.get("/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid).sort()).toEqual([...before, rotated.kid].sort());
      const fresh = (await s.http.post(`/v1/agents/${agentId}/credentials`).set(admin()).send({}).expect(201)).body;
      expect(fresh.kid).toBe(rotated.kid);
      await decide(old.token).expect(200);
      await decide(fresh.token).expect(200);

      await s.restart();
      await decide(old.token).expect(200);

      const again = (await s.http.post("/v1/signing-keys/rotate").set(admin()).send({ overlap_seconds: 0 }).expect(200)).body;
      const kids = (await s.http.get("/.well-known/jwks.json")).body.keys.map((k: { kid: string }) => k.kid);
      expect(kids).toContain(again.kid);
      expect(kids).toContain(old.kid);
      expect(kids).not.toContain(rotated.kid);
      expect((await decide(fresh.token).expect(401)).body.code).toBe("token_invalid");
      const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.filter((r: { type: string }) => r.type === "signing_key.rotated");
      expect(events).toHaveLength(2);
      expect(events[0]).toMatchObject({ reason: "quarterly", before: { signing_kid: old.kid }, after: { signing_kid: rotated.kid } });
    });
  });
});
