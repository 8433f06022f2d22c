import fs from "node:fs";
import { generateKeyPairSync } from "node:crypto";
import jwt from "jsonwebtoken";
import { databaseKinds } from "../support/databases";
import { withoutTests } from "../support/policies";
import { startTestServer, type TestServer } from "../support/claiim";
import { asDatabaseOwner, failWrites, sql } from "../support/sql";

const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

const staging = { action: "deploy", resource: "staging", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" } };
const production = { ...staging, resource: "production" };

describe.each(databaseKinds())("the deployment-agent story on %s", (kind) => {
  let s: TestServer;
  let human: { id: string; name: string; email: string };
  let org: { id: string; slug: string };
  let agent: { id: string; name: string };
  let token: string;
  let credentialId: string;

  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const asAgent = (t = token) => ({ Authorization: `Bearer ${t}` });
  const decide = (body: unknown, t = token) => s.http.post("/v1/decisions").set(asAgent(t)).send(body as object);
  const decisionCount = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE kind = 'decision'"))[0].n);
  const recordCount = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n);
  const records = async (query = "") => (await s.http.get(`/v1/chron/records${query}`).set(admin()).expect(200)).body;

  beforeAll(async () => {
    s = await startTestServer(kind);
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("first start: ready, reference policy active, bootstrap credential in a private file", async () => {
    await s.http.get("/healthz").expect(200, { status: "ok" });
    const ready = await s.http.get("/readyz").expect(200);
    expect(ready.body).toEqual({ status: "ready", policy_version: 1, chron: { writer: expect.objectContaining({ status: "ok" }), checkpointer: expect.objectContaining({ status: "ok" }) } });
    const mode = fs.statSync(s.claiim.bootstrapCredentialFile!).mode & 0o777;
    expect(mode).toBe(0o600);
    expect(s.admin).toMatch(/^claiim_/);
    const status = await s.http.get("/v1/policies/status").set(admin()).expect(200);
    expect(status.body).toMatchObject({ name: "claiim", active_version: 1, activated_by: "system:bootstrap", errors: [] });
    expect(status.body.active_revision).toBe(`1-${status.body.active_digest}`);
  });

  test("the management API refuses anonymous callers with a problem", async () => {
    const res = await s.http.get("/v1/agents").expect(401);
    expect(res.headers["content-type"]).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ status: 401, code: "credential_missing" });
    await s.http.get("/v1/agents").set({ Authorization: "Bearer claiim_nope_nope" }).expect(401);
  });

  test("register an organisation, an accountable human and deploy-bot", async () => {
    org = (await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme Corp" }).expect(201)).body;
    human = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice Ops", email: "alice@acme.example" }).expect(201)).body;
    expect(human).toMatchObject({ id: expect.stringMatching(UUID), organization: "acme", status: "active" });

    const noOwner = await s.http
      .post("/v1/agents")
      .set(admin())
      .send({ organization: "acme", name: "deploy-bot", owner: "nobody@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] })
      .expect(400);
    expect(noOwner.body).toMatchObject({ code: "owner_not_found", errors: [{ path: "owner" }] });

    const res = await s.http
      .post("/v1/agents")
      .set(admin())
      .send({ organization: "acme", name: "deploy-bot", description: "ships builds", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] })
      .expect(201);
    agent = res.body;
    expect(res.body).toMatchObject({
      organization: "acme",
      name: "deploy-bot",
      owner: { id: human.id, name: "Alice Ops", email: "alice@acme.example", status: "active" },
      status: "active",
      skills: [{ name: "deploy", version: "1.2.0" }],
    });
    const dup = await s.http
      .post("/v1/agents")
      .set(admin())
      .send({ organization: "acme", name: "deploy-bot", owner: human.id, skills: [{ name: "deploy", version: "1.2.0" }] })
      .expect(409);
    expect(dup.body.code).toBe("agent_exists");
    const badVersion = await s.http
      .post("/v1/agents")
      .set(admin())
      .send({ organization: "acme", name: "other-bot", owner: human.id, skills: [{ name: "deploy", version: "1.2" }] })
      .expect(400);
    expect(badVersion.body).toMatchObject({ code: "invalid_semver", errors: [{ path: "skills.0.version", message: "a semantic version such as 1.2.0" }] });
  });

  test("issue a credential: an ES256 JWT whose key is in the JWKS; only its id is stored", async () => {
    const res = await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201);
    token = res.body.token;
    credentialId = res.body.credential_id;
    const decoded = jwt.decode(token, { complete: true })!;
    expect(decoded.header).toMatchObject({ alg: "ES256", kid: res.body.kid });
    expect(decoded.payload).toMatchObject({ sub: agent.id, jti: credentialId, iss: "claiim", aud: "claiim" });
    const jwks = (await s.http.get("/.well-known/jwks.json").expect(200)).body;
    expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(res.body.kid);
    const stored = await sql(s.claiim.db, "SELECT * FROM agent_credentials");
    expect(stored).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain(token.split(".")[2]);
  });

  test("staging is allowed, production needs the accountable human's approval, and both are in Chron before the reply", async () => {
    const before = await decisionCount();
    const allow = (await decide(staging).expect(200)).body;
    expect(allow).toMatchObject({ decision: "allow", allow: true, policy: { version: 1 } });
    expect(allow.decision_id).toMatch(UUID);
    expect(await decisionCount()).toBe(before + 1);

    const deny = (await decide(production).expect(200)).body;
    expect(deny).toMatchObject({
      decision: "approval_required",
      allow: false,
      reasons: ["deploying to production requires a change approved by a human"],
      reason_codes: ["approval_required"],
      approval: { status: "pending", approvers: { accountable_human: { id: human.id, email: "alice@acme.example" }, roles: [], humans: [] } },
    });
    expect(await decisionCount()).toBe(before + 2);

    const { records: rows } = await records(`?agent=${agent.id}`);
    const policy = (await s.http.get("/v1/policies/status").set(admin())).body;
    const expected = (decisionId: string, request: typeof staging, decision: string, reasons: string[], codes: string[]) => ({
      kind: "decision",
      decision_id: decisionId,
      path: "claiim/decision",
      organization: { id: org.id, slug: "acme" },
      agent: { id: agent.id, name: "deploy-bot", status: "active" },
      accountable_human: { id: human.id, name: "Alice Ops", email: "alice@acme.example", status: "active" },
      on_behalf_of: null,
      requested_by: { credential_id: credentialId },
      action: request.action,
      resource: request.resource,
      purpose: request.purpose,
      skill: { name: "deploy", version: "1.2.0" },
      decision,
      reasons,
      reason_codes: codes,
      policy: { version: 1, revision: policy.active_revision, digest: policy.active_digest },
      bundles: { claiim: { revision: policy.active_revision } },
      input: {
        agent: { id: agent.id, name: "deploy-bot", status: "active", organization: "acme", skills: { deploy: { version: "1.2.0" } } },
        accountable_human: { id: human.id, name: "Alice Ops", email: "alice@acme.example", status: "active" },
        on_behalf_of: null,
        request,
      },
    });
    const [a, d] = rows.filter((r: { kind: string }) => r.kind === "decision").slice(-2);
    expect(a).toEqual({ ...expected(allow.decision_id, staging, "allow", allow.reasons, ["permitted_by_skill"]), seq: allow.chron.seq, timestamp: allow.timestamp, prev_hash: expect.stringMatching(HEX64), hash: allow.chron.hash });
    expect(d).toEqual({
      ...expected(deny.decision_id, production, "approval_required", ["deploying to production requires a change approved by a human"], ["approval_required"]),
      approval: {
        id: deny.approval.id,
        status: "pending",
        expires_at: deny.approval.expires_at,
        requested_decision_id: deny.decision_id,
        approvers: { accountable_human: true, roles: [], humans: [] },
      },
      seq: deny.chron.seq,
      timestamp: deny.timestamp,
      prev_hash: allow.chron.hash,
      hash: deny.chron.hash,
    });
    expect(a.timestamp).toMatch(ISO);
    expect(a.reasons).toEqual([`skill "deploy" permits "deploy" on "staging"`]);
  });

  test("the agent's identity comes from CLAIIM's records, never from the body", async () => {
    const res = await decide({ ...staging, agent: { id: "someone-else" } }).expect(400);
    expect(res.body).toMatchObject({ code: "validation_failed", errors: [{ path: "agent", message: 'unknown field "agent"' }] });
  });

  test("skills: an unregistered skill or another version is denied", async () => {
    const other = (await decide({ ...staging, skill: { name: "code-review", version: "1.0.0" } }).expect(200)).body;
    expect(other).toMatchObject({ decision: "deny", reasons: expect.arrayContaining(['skill "code-review" is not registered for agent "deploy-bot"']) });
    const version = (await decide({ ...staging, skill: { name: "deploy", version: "1.3.0" } }).expect(200)).body;
    expect(version).toMatchObject({ decision: "deny", reasons: ['skill "deploy" version "1.3.0" is not the registered version "1.2.0"'] });
  });

  test("bad input gets a specific problem and decides nothing", async () => {
    const before = await decisionCount();
    const malformed = await s.http.post("/v1/decisions").set(asAgent()).set("Content-Type", "application/json").send('{"action": "deploy",').expect(400);
    expect(malformed.body.code).toBe("malformed_json");
    const missing = await decide({ action: "deploy", resource: "staging", skill: staging.skill }).expect(400);
    expect(missing.body.errors).toEqual([{ path: "purpose", message: '"purpose" is required' }]);
    const big = await decide({ ...staging, purpose: "x".repeat(70 * 1024) }).expect(413);
    expect(big.body.code).toBe("payload_too_large");
    const notJson = await s.http.post("/v1/decisions").set(asAgent()).set("Content-Type", "text/plain").send("deploy").expect(400);
    expect(notJson.body.code).toBe("content_type_invalid");
    expect(await decisionCount()).toBe(before);
  });

  test("forged, expired, foreign and revoked tokens get 401 and no decision", async () => {
    const before = await decisionCount();
    const [header, payload] = token.split(".");
    const none = `${Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url")}.${payload}.`;
    const foreignKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const kid = (JSON.parse(Buffer.from(header, "base64url").toString()) as { kid: string }).kid;
    const claims = { sub: agent.id, jti: credentialId };
    const foreign = jwt.sign(claims, foreignKey, { algorithm: "ES256", keyid: kid, issuer: "claiim", audience: "claiim", expiresIn: 600 });
    const [{ private_key_pem: pem }] = (await sql(s.claiim.db, "SELECT private_key_pem FROM signing_keys WHERE purpose = 'agent-token'")) as { private_key_pem: string }[];
    const expired = jwt.sign({ ...claims, exp: Math.floor(Date.now() / 1000) - 60 }, pem, { algorithm: "ES256", keyid: kid, issuer: "claiim", audience: "claiim" });
    const wrongAudience = jwt.sign(claims, pem, { algorithm: "ES256", keyid: kid, issuer: "claiim", audience: "elsewhere", expiresIn: 600 });
    const tampered = `${header}.${Buffer.from(JSON.stringify({ ...jwt.decode(token) as object, sub: "00000000-0000-0000-0000-000000000000" })).toString("base64url")}.${token.split(".")[2]}`;
    const cases: [string, string][] = [
      [none, "token_invalid"],
      [foreign, "token_invalid"],
      [expired, "token_expired"],
      [wrongAudience, "token_invalid"],
      [tampered, "token_invalid"],
      ["not-a-token", "token_invalid"],
    ];
    for (const [bad, code] of cases) {
      const res = await decide(staging, bad).expect(401);
      expect(res.body.code).toBe(code);
    }
    await s.http.post("/v1/decisions").send(staging).expect(401);

    const second = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({ ttl_seconds: 3600 }).expect(201)).body;
    await decide(staging, second.token).expect(200);
    await s.http.delete(`/v1/agents/${agent.id}/credentials/${second.credential_id}`).set(admin()).expect(200);
    const revoked = await decide(staging, second.token).expect(401);
    expect(revoked.body.code).toBe("credential_revoked");
    expect(await decisionCount()).toBe(before + 1);
  });

  test("agent tokens can ask for decisions but manage nothing", async () => {
    const res = await s.http.get("/v1/agents").set(asAgent()).expect(403);
    expect(res.body.code).toBe("agent_not_allowed");
    await s.http.post(`/v1/agents/${agent.id}/credentials`).set(asAgent()).send({}).expect(403);
    await s.http.get("/v1/chron/records").set(asAgent()).expect(403);
    const adminDecides = await s.http.post("/v1/decisions").set(admin()).send(staging).expect(403);
    expect(adminDecides.body.code).toBe("agent_only");
  });

  test("a suspended agent gets a recorded deny, and acts again once reactivated", async () => {
    await s.http.post(`/v1/agents/${agent.id}/suspend`).set(admin()).send({ reason: "incident 42" }).expect(200);
    const denied = (await decide(staging).expect(200)).body;
    expect(denied).toMatchObject({ decision: "deny", reasons: ['agent "deploy-bot" is suspended, not active'] });
    const { records: rows } = await records(`?decision=deny&agent=${agent.id}`);
    expect(rows[rows.length - 1]).toMatchObject({ decision_id: denied.decision_id, agent: { status: "suspended" } });
    await s.http.post(`/v1/agents/${agent.id}/reactivate`).set(admin()).send({ reason: "incident closed" }).expect(200);
    await decide(staging).expect(200).expect((r) => expect(r.body.decision).toBe("allow"));
  });

  test("a policy that does not compile gets OPA's errors, and the active version stays", async () => {
    const res = await s.http
      .post("/v1/policies")
      .set(admin())
      .send({ files: { "claiim/decision.rego": "package claiim\n\ndecision := {\n" }, message: "broken", activate: true })
      .expect(422);
    expect(res.body.code).toBe("policy_syntax_error");
    expect(res.body.opa_errors[0]).toMatchObject({ file: "claiim/decision.rego", row: expect.any(Number), code: "rego_parse_error" });
    const unsupported = await s.http
      .post("/v1/policies")
      .set(admin())
      .send({ files: { "claiim/decision.rego": 'package claiim\n\ndecision := http.send({"method": "get", "url": "http://x"})\n' }, message: "phones home", activate: true })
      .expect(422);
    expect(unsupported.body).toMatchObject({ code: "policy_builtin_unsupported", detail: expect.stringMatching(/http\.send/) });
    expect(unsupported.body.opa_errors[0]).toMatchObject({ file: "claiim/decision.rego", row: 3 });
    const conflict = await s.http
      .post("/v1/policies")
      .set(admin())
      .send({ files: { "claiim/decision.rego": 'package claiim\n\ndecision := {"allow": true, "reasons": []}\n', "claiim/decision/extra.rego": "package claiim.decision\n\nx := 1\n" }, message: "two owners of one path", activate: true })
      .expect(422);
    expect(conflict.body).toMatchObject({ code: "policy_package_conflict", detail: expect.stringMatching(/package claiim.decision conflicts with rule decision/) });
    expect(conflict.body.opa_errors).toEqual(expect.arrayContaining([expect.objectContaining({ file: expect.stringMatching(/^claiim\//), row: expect.any(Number) })]));
    expect((await s.http.get("/v1/policies/status").set(admin())).body.active_version).toBe(1);
    expect((await decide(staging).expect(200)).body.policy.version).toBe(1);
  });

  test("publishing and activating a new version swaps the evaluator; decisions name the version", async () => {
    const files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files as Record<string, string>;
    const data = JSON.parse(files["claiim/data.json"]);
    data.skills.deploy.permits.push({ action: "deploy", resources: ["production"] });
    data.skills.deploy.requires_approval = [];
    const published = await s.http
      .post("/v1/policies")
      .set(admin())
      .send({ files: { ...withoutTests(files), "claiim/data.json": JSON.stringify(data) }, message: "allow production" })
      .expect(201);
    expect(published.body).toMatchObject({ version: 2, active: false, created_by: expect.stringMatching(/^api_key:/) });
    expect(fs.existsSync(`${s.config.bundleDir}/2.tar.gz`)).toBe(true);
    expect((await decide(production).expect(200)).body).toMatchObject({ decision: "approval_required", policy: { version: 1 } });
    await s.http.post("/v1/policies/2/activate").set(admin()).expect(200);
    const allowed = (await decide(production).expect(200)).body;
    expect(allowed).toMatchObject({ decision: "allow", policy: { version: 2, revision: published.body.revision } });
    await s.http.post("/v1/policies/1/activate").set(admin()).expect(200);
    expect((await decide(production).expect(200)).body).toMatchObject({ decision: "approval_required", policy: { version: 1 } });
    const status = (await s.http.get("/v1/policies/status").set(admin()).expect(200)).body;
    const under = (v: number) => Number((await_counts as Record<number, number>)[v] ?? 0);
    const await_counts = Object.fromEntries(
      ((await sql(s.claiim.db, "SELECT policy_version AS v, COUNT(*) AS n FROM chron_records WHERE kind = 'decision' GROUP BY policy_version")) as { v: number; n: number }[]).map((r) => [Number(r.v), Number(r.n)]),
    );
    expect(status.decisions).toEqual([
      { version: 1, revision: expect.stringMatching(/^1-sha256:/), count: under(1) },
      { version: 2, revision: published.body.revision, count: under(2) },
    ]);
    expect(under(2)).toBe(1);
  });

  test("concurrent decisions all land, each once, in one valid chain", async () => {
    const before = await decisionCount();
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => decide(i % 2 ? staging : production)));
    expect(replies.every((r) => r.status === 200)).toBe(true);
    expect(await decisionCount()).toBe(before + 60);
    const seqs = replies.map((r) => r.body.chron.seq).sort((a, b) => a - b);
    expect(new Set(seqs).size).toBe(60);
    expect((await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body).toMatchObject({ valid: true, checked: await recordCount() });
  });

  test("list filters by kind, agent, owner, decision and time, with cursor paging", async () => {
    type Row = { seq: number; kind: string; decision?: string; timestamp: string; type?: string };
    const all: Row[] = [];
    let cursor: string | null = null;
    do {
      const page: { records: Row[]; next_cursor: string | null } = await records(`?limit=7${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.records.length).toBeLessThanOrEqual(7);
      all.push(...page.records);
      cursor = page.next_cursor;
    } while (cursor);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    expect(all.length).toBe(await recordCount());
    const decisions = all.filter((r) => r.kind === "decision");
    expect(decisions.length).toBe(await decisionCount());

    expect((await records("?kind=decision&limit=1000")).records.length).toBe(decisions.length);
    expect((await records("?kind=event&limit=1000")).records.map((r: Row) => r.type)).toEqual(expect.arrayContaining(["organization.created", "agent.registered", "credential.issued", "agent.suspended"]));
    const denies = (await records("?decision=deny&limit=1000")).records as Row[];
    expect(denies.length).toBe(decisions.filter((r) => r.decision === "deny").length);
    expect((await records(`?kind=decision&owner=${human.id}&limit=1000`)).records.length).toBe(decisions.length);
    expect((await records(`?owner=${agent.id}`)).records).toEqual([]);
    const mid = decisions[Math.floor(decisions.length / 2)].timestamp;
    const later = (await records(`?kind=decision&from=${encodeURIComponent(mid)}&limit=1000`)).records as Row[];
    expect(later.length).toBe(decisions.filter((r) => r.timestamp >= mid).length);
    expect((await records(`?kind=decision&to=${encodeURIComponent(mid)}&limit=1000`)).records.length).toBe(decisions.filter((r) => r.timestamp < mid).length);

    const inverted = await s.http.get(`/v1/chron/records?from=${encodeURIComponent(mid)}&to=2000-01-01T00:00:00Z`).set(admin()).expect(400);
    expect(inverted.body.code).toBe("range_inverted");
    expect((await s.http.get("/v1/chron/records?cursor=bogus").set(admin()).expect(400)).body.code).toBe("invalid_cursor");
    expect((await s.http.get("/v1/chron/records?decision=maybe").set(admin()).expect(400)).body.errors[0].path).toBe("decision");
  });

  test("verify names the first modified, deleted or reordered record", async () => {
    await asDatabaseOwner(s.claiim.db, async () => {
      const ok = (await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body;
      expect(ok.valid).toBe(true);
      const verify = async () => (await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body;
      const [deny] = (await sql(s.claiim.db, "SELECT seq, content, decision FROM chron_records WHERE decision = 'deny' ORDER BY seq LIMIT 1")) as { seq: number; content: string; decision: string }[];
      const n = Number(deny.seq);

      await sql(s.claiim.db, "UPDATE chron_records SET content = replace(content, '\"deny\"', '\"allow\"') WHERE seq = $1", [n]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: n, problem: expect.stringMatching(/^hash mismatch/) } });
      await sql(s.claiim.db, "UPDATE chron_records SET content = $1 WHERE seq = $2", [deny.content, n]);

      await sql(s.claiim.db, "UPDATE chron_records SET decision = 'allow' WHERE seq = $1", [n]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: n, problem: expect.stringMatching(/column decision/) } });
      await sql(s.claiim.db, "UPDATE chron_records SET decision = $1 WHERE seq = $2", [deny.decision, n]);

      const [row] = await sql(s.claiim.db, "SELECT * FROM chron_records WHERE seq = $1", [n]);
      await sql(s.claiim.db, "DELETE FROM chron_records WHERE seq = $1", [n]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: n, problem: expect.stringMatching(/^sequence gap/) } });
      const cols = Object.keys(row);
      await sql(s.claiim.db, `INSERT INTO chron_records (${cols.join(", ")}) VALUES (${cols.map((_, i) => `$${i + 1}`).join(", ")})`, Object.values(row));

      await sql(s.claiim.db, "UPDATE chron_records SET seq = -3 WHERE seq = 3");
      await sql(s.claiim.db, "UPDATE chron_records SET seq = 3 WHERE seq = 5");
      await sql(s.claiim.db, "UPDATE chron_records SET seq = 5 WHERE seq = -3");
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: 3, problem: expect.stringMatching(/^broken link/) } });
      await sql(s.claiim.db, "UPDATE chron_records SET seq = -5 WHERE seq = 5");
      await sql(s.claiim.db, "UPDATE chron_records SET seq = 5 WHERE seq = 3");
      await sql(s.claiim.db, "UPDATE chron_records SET seq = 3 WHERE seq = -5");

      // A record slipped into the middle: everything after it moves up one.
      const k = n;
      await sql(s.claiim.db, "UPDATE chron_records SET seq = -seq - 1 WHERE seq > $1", [k]);
      await sql(s.claiim.db, "UPDATE chron_records SET seq = -seq WHERE seq < 0");
      const [prior] = (await sql(s.claiim.db, "SELECT * FROM chron_records WHERE seq = $1", [k])) as Record<string, unknown>[];
      const forged = { ...prior, seq: k + 1, id: "forged-record", prev_hash: prior.hash };
      await sql(s.claiim.db, `INSERT INTO chron_records (${Object.keys(forged).join(", ")}) VALUES (${Object.keys(forged).map((_, i) => `$${i + 1}`).join(", ")})`, Object.values(forged));
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: k + 1 } });
      await sql(s.claiim.db, "DELETE FROM chron_records WHERE id = 'forged-record'");
      await sql(s.claiim.db, "UPDATE chron_records SET seq = -seq + 1 WHERE seq > $1", [k + 1]);
      await sql(s.claiim.db, "UPDATE chron_records SET seq = -seq WHERE seq < 0");

      const head = ok.head.seq;
      const [last] = await sql(s.claiim.db, "SELECT * FROM chron_records WHERE seq = $1", [head]);
      await sql(s.claiim.db, "DELETE FROM chron_records WHERE seq = $1", [head]);
      expect(await verify()).toMatchObject({ valid: false, first_bad: { seq: head, problem: expect.stringMatching(/^missing/) } });
      await sql(s.claiim.db, `INSERT INTO chron_records (${Object.keys(last).join(", ")}) VALUES (${Object.keys(last).map((_, i) => `$${i + 1}`).join(", ")})`, Object.values(last));

      // Checkpoints go on being signed every second meanwhile; the chain itself is as it was.
      expect(await verify()).toMatchObject({ valid: true, checked: ok.checked, head: ok.head, problem_count: 0 });
    });
  });

  test("when Chron cannot write, no decision is returned (503) and nothing is half-written", async () => {
    const before = await decisionCount();
    const undo = await failWrites(s.claiim.db, "chron_records", "INSERT");
    try {
      const replies = await Promise.all([decide(staging), decide(production), decide(staging)]);
      for (const r of replies) {
        expect(r.status).toBe(503);
        expect(r.body).toMatchObject({ code: "chron_unavailable" });
        expect(r.body.allow).toBeUndefined();
      }
      expect(await decisionCount()).toBe(before);
    } finally {
      await undo();
    }
    const records = await recordCount();
    const after = (await decide(staging).expect(200)).body;
    expect(after.chron.seq).toBe(records + 1);
    expect(await decisionCount()).toBe(before + 1);
    expect((await s.http.get("/v1/chron/verify").set(admin())).body.valid).toBe(true);
  });

  test("a restart keeps the signing key, the credentials, the active policy and the chain", async () => {
    const jwksBefore = (await s.http.get("/.well-known/jwks.json")).body;
    const head = (await s.http.get("/v1/chron/verify").set(admin())).body.head;
    await s.restart();
    expect(s.claiim.bootstrapCredentialFile).toBeNull();
    expect((await s.http.get("/.well-known/jwks.json")).body).toEqual(jwksBefore);
    const res = (await decide(staging).expect(200)).body;
    expect(res).toMatchObject({ decision: "allow", policy: { version: 1 } });
    // Between the two: the start-up activation of the stored active version, itself recorded.
    expect(res.chron.seq).toBe(head.seq + 2);
    const { records: [startup] } = await records(`?kind=event&cursor=${Buffer.from(JSON.stringify({ after: head.seq })).toString("base64url")}`);
    expect(startup).toMatchObject({ seq: head.seq + 1, type: "policy.activated", actor: { type: "system", id: "startup" }, after: { active_version: 1 } });
    const verified = (await s.http.get("/v1/chron/verify").set(admin())).body;
    expect(verified).toMatchObject({ valid: true, head: { seq: head.seq + 2, hash: res.chron.hash } });
  });

  test("the OpenAPI document describes the decision endpoint from its validation schema", async () => {
    const doc = (await s.http.get("/openapi.json").expect(200)).body;
    expect(doc.openapi).toBe("3.1.0");
    const op = doc.paths["/v1/decisions"].post;
    expect(op.requestBody.content["application/json"].schema.$ref).toBe("#/components/schemas/DecisionRequest");
    const schema = doc.components.schemas.DecisionRequest;
    expect(schema.required).toEqual(["action", "resource", "purpose", "skill"]);
    expect(schema.additionalProperties).toBe(false);
  });
});
