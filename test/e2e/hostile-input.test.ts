import fs from "node:fs";
import path from "node:path";
import { generateKeyPairSync } from "node:crypto";
import { gzipSync } from "node:zlib";
import * as tar from "tar";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { downloadExport, saveJwks } from "../support/export";
import { claiimVerify } from "../support/verify-cli";
import { asDatabaseOwner, sql } from "../support/sql";
import { createChronStore } from "../../src/server";
import { seal, type DecisionContent } from "../../src/chron/record";
import { MAX_JSON_DEPTH } from "../../src/lib/text";

const staging = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };

/** `inner` wrapped in `levels` arrays. */
function nested(levels: number, inner: unknown = 1): unknown {
  let v = inner;
  for (let i = 0; i < levels; i++) v = [v];
  return v;
}

describe.each(databaseKinds())("hostile input on %s", (kind) => {
  let s: TestServer;
  let dir: string;
  let acmeToken: string;
  let globexToken: string;
  let acmeAgent: string;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const count = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n);
  const verify = async (credential = s.admin) => (await s.http.get("/v1/chron/verify").set({ Authorization: `Bearer ${credential}` }).expect(200)).body;
  const decide = (token: string, body: unknown) => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(body as object);

  async function agentIn(org: string, human: string, name: string): Promise<{ id: string; token: string }> {
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: org, name, owner: human, skills: [staging.skill] }).expect(201)).body;
    const token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    return { id: agent.id, token };
  }

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_CHECKPOINT_EVERY_RECORDS: "25", CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600" } });
    dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "hostile-"));
    for (const [slug, email] of [
      ["acme", "alice@acme.example"],
      ["globex", "gus@globex.example"],
    ]) {
      await s.http.post("/v1/organizations").set(admin()).send({ slug, name: slug }).expect(201);
      await s.http.post("/v1/humans").set(admin()).send({ organization: slug, name: email.split("@")[0], email }).expect(201);
    }
    const acme = await agentIn("acme", "alice@acme.example", "deploy-bot");
    acmeAgent = acme.id;
    acmeToken = acme.token;
    globexToken = (await agentIn("globex", "gus@globex.example", "g-bot")).token;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a lone surrogate or a NUL anywhere is refused with invalid_text naming the field, and nothing is recorded", async () => {
    const before = await count();
    // Sent as raw JSON text, as an attacker would: the escapes reach the parser as they are.
    const raw = (body: string) => s.http.post("/v1/decisions").set({ Authorization: `Bearer ${acmeToken}`, "Content-Type": "application/json" }).send(body);
    const surrogate = await raw('{"action":"deploy\\ud800","resource":"staging","purpose":"x","skill":{"name":"deploy","version":"1.2.0"}}').expect(400);
    expect(surrogate.body).toMatchObject({ code: "invalid_text", errors: [{ path: "action", message: expect.stringMatching(/lone UTF-16 surrogate/) }] });
    const nul = await raw('{"action":"deploy","resource":"stag\\u0000ing","purpose":"x","skill":{"name":"deploy","version":"1.2.0"}}').expect(400);
    expect(nul.body).toMatchObject({ code: "invalid_text", errors: [{ path: "resource", message: expect.stringMatching(/NUL/) }] });
    const deep = await decide(acmeToken, { ...staging, on_behalf_of: { subject: "carol\udc00@x" } }).expect(400);
    expect(deep.body.errors[0].path).toBe("on_behalf_of.subject");
    const key = await raw('{"action":"deploy","resource":"staging","purpose":"x","skill":{"name":"deploy","version":"1.2.0"},"\\udfff":1}').expect(400);
    expect(key.body.code).toBe("invalid_text");

    // A human's name: once a 503 database_unavailable, which looked like an outage.
    const human = await s.http.post("/v1/humans").set(admin()).set("Content-Type", "application/json").send('{"organization":"acme","name":"Bob\\ud800","email":"bob@acme.example"}').expect(400);
    expect(human.body).toMatchObject({ code: "invalid_text", errors: [{ path: "name" }] });
    // Form bodies, query strings and path segments obey the same rule.
    const form = await s.http.post("/oauth/token").type("form").send("grant_type=client_credentials&client_id=x&client_secret=y&on_behalf_of=carol%00").expect(400);
    expect(form.body).toMatchObject({ code: "invalid_text", errors: [{ path: "on_behalf_of" }] });
    expect((await s.http.get("/v1/chron/records?organization=acme%00").set(admin()).expect(400)).body.code).toBe("invalid_text");
    expect((await s.http.get("/v1/agents/%00").set(admin()).expect(400)).body.code).toBe("invalid_text");

    expect(await count()).toBe(before);
    expect(await verify()).toMatchObject({ valid: true, problems: [] });
  });

  test("one poisoned request among hundreds takes no other agent's decision down", async () => {
    for (let round = 0; round < 3; round++) {
      const requests = Array.from({ length: 150 }, (_, i) =>
        i === 75
          ? s.http.post("/v1/decisions").set({ Authorization: `Bearer ${acmeToken}`, "Content-Type": "application/json" }).send('{"action":"deploy","resource":"staging\\u0000","purpose":"x","skill":{"name":"deploy","version":"1.2.0"}}')
          : decide(i % 2 ? acmeToken : globexToken, staging),
      );
      const statuses = (await Promise.all(requests)).map((r) => r.status);
      expect(statuses.filter((st) => st === 200)).toHaveLength(149);
      expect(statuses[75]).toBe(400);
    }
    expect(await verify()).toMatchObject({ valid: true });
  });

  test("a record the database refuses fails alone: the others of its batch commit, and the chain verifies", async () => {
    const [taken] = await sql(s.claiim.db, "SELECT id FROM chron_records WHERE kind = 'decision' ORDER BY seq DESC LIMIT 1");
    const template = JSON.parse(((await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [taken.id]))[0].content as string)) as DecisionContent;
    const before = await count();
    // One content reuses a stored record's id: the database's unique index refuses it, in a batch of 40.
    const settled = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => s.claiim.writer.append({ ...template, decision_id: i === 20 ? (taken.id as string) : `isolation-${kind}-${i}`, timestamp: new Date().toISOString() })),
    );
    expect(settled.filter((r) => r.status === "fulfilled")).toHaveLength(39);
    expect(settled[20].status).toBe("rejected");
    expect(await count()).toBe(before + 39);
    await s.claiim.checkpointer.idle();
    expect(await verify()).toMatchObject({ valid: true });
  });

  test("a record stored before the text rule (a lone surrogate in a column) still verifies, exports, and verifies offline", async () => {
    const store = createChronStore(s.claiim.db);
    const template = JSON.parse(((await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'decision' ORDER BY seq DESC LIMIT 1"))[0].content as string)) as DecisionContent;
    const legacy: DecisionContent = { ...template, decision_id: `legacy-${kind}`, action: "deploy\ud800", timestamp: new Date().toISOString() };
    // As an earlier CLAIIM wrote it: straight to the store, each database encoding the column its own way.
    await s.claiim.writer.close().catch(() => undefined);
    const rows = seal([legacy], await store.head(), (hash) => s.claiim.chronSigner.tag(hash));
    await store.append(() => rows);
    s.claiim.checkpointer.committed(rows);
    await s.restart();
    const [stored] = await sql(s.claiim.db, "SELECT action FROM chron_records WHERE id = $1", [legacy.decision_id]);
    expect(stored.action).not.toBe(legacy.action);
    expect(await verify()).toMatchObject({ valid: true });
    await decide(acmeToken, staging).expect(200);
    await s.claiim.checkpointer.idle();
    const jwks = await saveJwks(s, dir);
    const file = await downloadExport(s, s.admin, "format=ndjson", dir, `legacy-${kind}.ndjson`);
    expect(await claiimVerify(file, jwks)).toMatchObject({ code: 0 });
  });

  test("verification goes on past a bad record: tampering after it is named too", async () => {
    const [a, b] = await sql(s.claiim.db, "SELECT seq FROM chron_records WHERE kind = 'decision' ORDER BY seq LIMIT 2 OFFSET 10");
    const flip = "UPDATE chron_records SET decision = CASE WHEN decision = 'allow' THEN 'deny' ELSE 'allow' END WHERE seq = $1";
    await asDatabaseOwner(s.claiim.db, async () => {
      await sql(s.claiim.db, "UPDATE chron_records SET content = REPLACE(content, '\"purpose\":\"release\"', '\"purpose\":\"forged\"') WHERE seq = $1", [a.seq]);
      await sql(s.claiim.db, flip, [b.seq]);
    });
    try {
      const result = await verify();
      expect(result).toMatchObject({ valid: false, problem_count: 2, first_bad: { seq: Number(a.seq) } });
      expect(result.problems.map((p: { seq: number }) => p.seq)).toEqual([Number(a.seq), Number(b.seq)]);
    } finally {
      await asDatabaseOwner(s.claiim.db, async () => {
        await sql(s.claiim.db, "UPDATE chron_records SET content = REPLACE(content, '\"purpose\":\"forged\"', '\"purpose\":\"release\"') WHERE seq = $1", [a.seq]);
        await sql(s.claiim.db, flip, [b.seq]);
      });
    }
    expect(await verify()).toMatchObject({ valid: true });
  });

  test("structure is bounded: nesting past the limit is refused at the boundary, a JWK is flat; what is accepted exports and verifies offline", async () => {
    const jwk = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
    const register = (extra: unknown) => s.http.post(`/v1/agents/${acmeAgent}/clients`).set(admin()).send({ method: "private_key_jwt", jwk: { ...jwk, extra } });
    // body → jwk → extra: past MAX_JSON_DEPTH the walk stops before any schema sees it.
    const refused = await register(nested(4000)).expect(400);
    expect(refused.body).toMatchObject({ code: "json_too_deep", errors: [{ path: expect.stringMatching(/^jwk\.extra(\.0)+$/) }] });
    expect((await register(nested(MAX_JSON_DEPTH - 1)).expect(400)).body.code).toBe("json_too_deep");
    // Within the limit, a JWK's members are still strings, booleans, numbers or lists of strings.
    expect((await register(nested(MAX_JSON_DEPTH - 2)).expect(400)).body.code).toBe("validation_failed");
    await register(["sig", "\u{1F510} astral \u00e9 text"]).expect(201);
    await s.claiim.checkpointer.idle();
    await decide(acmeToken, staging).expect(200);
    await s.claiim.checkpointer.idle();
    const jwks = await saveJwks(s, dir);
    const file = await downloadExport(s, s.admin, "format=ndjson", dir, `deep-${kind}.ndjson`);
    expect(await claiimVerify(file, jwks)).toMatchObject({ code: 0 });
    // What the server stores, the offline verifier verifies; and a hostile file makes it fail, not crash.
    const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
    const hostile = JSON.parse(lines[1]);
    hostile.input = "HOSTILE";
    lines[1] = JSON.stringify(hostile).replace('"HOSTILE"', `${"[".repeat(100_000)}${"]".repeat(100_000)}`);
    fs.writeFileSync(`${file}.hostile`, `${lines.join("\n")}\n`);
    const bad = await claiimVerify(`${file}.hostile`, jwks);
    expect(bad).toMatchObject({ code: 1, out: expect.stringMatching(/hash mismatch/) });
  });

  test("a token stops working when its signing key retires, even one used (and cached) before", async () => {
    const { token: second } = await agentIn("acme", "alice@acme.example", `rotating-${kind}`);
    const tokens = [acmeToken, second];
    for (const t of tokens) await decide(t, staging).expect(200);
    await s.http.post("/v1/signing-keys/rotate").set(admin()).send({ overlap_seconds: 1, reason: "test" }).expect(200);
    for (const t of tokens) await decide(t, staging).expect(200);
    await new Promise((r) => setTimeout(r, 1300));
    for (const t of tokens) expect((await decide(t, staging).expect(401)).body.code).toBe("token_invalid");
    const fresh = (await s.http.post(`/v1/agents/${acmeAgent}/credentials`).set(admin()).send({}).expect(201)).body.token;
    await decide(fresh, staging).expect(200);
    acmeToken = fresh;
  });

  test("client mistakes are 4xx problems with stable codes, never a 500", async () => {
    const problem = (res: { status: number; body: { code: string }; headers: Record<string, string> }) => [res.status, res.body.code, res.headers["content-type"]?.split(";")[0]];
    expect(problem(await s.http.get("/v1/agents/%ZZ"))).toEqual([400, "path_invalid", "application/problem+json"]);
    expect(problem(await s.http.get("/v1/agents/%ZZ").set(admin()))).toEqual([400, "path_invalid", "application/problem+json"]);
    const basic = await s.http.post("/oauth/token").set("Authorization", `Basic ${Buffer.from("a%:b").toString("base64")}`).type("form").send("grant_type=client_credentials");
    expect(problem(basic)).toEqual([401, "client_authentication_invalid", "application/problem+json"]);
    expect(basic.body.error).toBe("invalid_client");
    const many = Array.from({ length: 60 }, (_, i) => `p${i}=1`).join("&");
    expect(problem(await s.http.post("/oauth/token").type("form").send(`grant_type=client_credentials&${many}`))).toEqual([413, "too_many_parameters", "application/problem+json"]);
    const gzip = await s.http.post("/v1/organizations").set(admin()).set({ "Content-Type": "application/json", "Content-Encoding": "gzip" }).send(Buffer.from("not gzip at all"));
    expect(problem(gzip)).toEqual([400, "content_encoding_invalid", "application/problem+json"]);
    const long = `${"a".repeat(300)}/x.rego`;
    const policy = await s.http.post("/v1/policies").set(admin()).send({ message: "m", files: { [long]: "package x\n", "claiim/d.rego": "package claiim\n" } });
    expect(problem(policy)).toEqual([400, "policy_path_invalid", "application/problem+json"]);
    const entry = (name: string, body: string) => {
      const data = Buffer.from(body);
      const header = Buffer.alloc(512);
      new tar.Header({ path: name, type: "File", size: data.length, mode: 0o644, mtime: new Date(0) }).encode(header, 0);
      return Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
    };
    const upload = (entries: Buffer[]) =>
      s.http.post("/v1/policies/archive?message=m").set(admin()).set("Content-Type", "application/gzip").send(gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)])));
    expect(problem(await upload([entry(long, "package x\n"), entry("claiim/d.rego", "package claiim\n")]))).toEqual([400, "policy_path_invalid", "application/problem+json"]);
    // Two entries of one name: the second used to win silently.
    const dup = await upload([entry("claiim/d.rego", "package claiim\n"), entry("./claiim/d.rego", "package claiim\nallow := true\n")]);
    expect(problem(dup)).toEqual([400, "archive_entry_duplicate", "application/problem+json"]);
    expect(problem(await upload([entry("claiim/d.rego", "package claiim\n\u0000")]))).toEqual([400, "archive_entry_refused", "application/problem+json"]);
  });

  test("unsupported methods on known paths are 405 with Allow; the OpenAPI document marks bodies required and lists every status", async () => {
    const put = await s.http.put("/v1/organizations").set(admin()).expect(405);
    expect(put.headers.allow).toBe("GET, HEAD, POST");
    expect(put.body).toMatchObject({ code: "method_not_allowed", status: 405 });
    expect((await s.http.delete("/v1/decisions").expect(405)).headers.allow).toBe("POST");
    expect((await s.http.get("/v1/nowhere").expect(404)).body.code).toBe("route_not_found");
    const doc = (await s.http.get("/openapi.json").expect(200)).body;
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, { requestBody?: { required?: boolean }; responses: Record<string, unknown> }>>)) {
      for (const [method, op] of Object.entries(ops)) {
        if (op.requestBody) expect([p, method, op.requestBody.required]).toEqual([p, method, true]);
        expect([p, method, "503" in op.responses]).toEqual([p, method, true]);
        if (p.includes("{")) expect([p, method, "404" in op.responses]).toEqual([p, method, true]);
      }
    }
  });

  test("a key confined to one organisation sees its own counts only, verification and policy status included", async () => {
    const key = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "acme audit", role: "auditor", organization: "acme" }).expect(201)).body.secret;
    const acmeDecisions = Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records r WHERE kind = 'decision' AND org_id = (SELECT id FROM organizations WHERE slug = 'acme')"))[0].n);
    const acmeRecords = Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE org_id = (SELECT id FROM organizations WHERE slug = 'acme')"))[0].n);
    const confined = await verify(key);
    expect(confined).toMatchObject({ valid: true, checked: acmeRecords, scope: { organization_id: expect.any(String) } });
    expect(confined.checked).toBeLessThan(await count());
    const status = (await s.http.get("/v1/policies/status").set({ Authorization: `Bearer ${key}` }).expect(200)).body;
    expect(status.decisions.reduce((n: number, d: { count: number }) => n + d.count, 0)).toBe(acmeDecisions);
    const all = (await s.http.get("/v1/policies/status").set(admin()).expect(200)).body;
    expect(all.decisions.reduce((n: number, d: { count: number }) => n + d.count, 0)).toBeGreaterThan(acmeDecisions);
  });
});
