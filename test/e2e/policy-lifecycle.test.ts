import { execFile, spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import * as tar from "tar";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { OPA_BIN } from "../support/fake-core";
import { sql } from "../support/sql";
import { contentDigest, fileSha256, readBundle, revisionOf, writeBundle } from "../../src/policy/bundle";

const run = promisify(execFile);

describe.each(databaseKinds())("changing policy safely on %s", (kind) => {
  let s: TestServer;
  let files: Record<string, string>;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const publish = (body: object) => s.http.post("/v1/policies").set(admin()).send(body);

  beforeAll(async () => {
    s = await startTestServer(kind);
    files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a version whose own tests fail is refused, naming the tests; nothing changes", async () => {
    const broken = { ...files, "claiim/decision_test.rego": files["claiim/decision_test.rego"].replace('allowed(req("deploy", "staging", "deploy", "1.2.0"))', 'allowed(req("deploy", "production", "deploy", "1.2.0"))') };
    const res = await publish({ files: broken, message: "oops", activate: true }).expect(422);
    expect(res.body).toMatchObject({ code: "policy_tests_failed", failing_tests: [{ name: "data.claiim_test.test_devops_deploy_staging_allowed", file: "claiim/decision_test.rego" }] });
    expect((await s.http.get("/v1/policies").set(admin())).body.versions).toHaveLength(1);
    const refused = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.filter((r: { type: string }) => r.type === "policy.publish_refused");
    expect(refused[refused.length - 1]).toMatchObject({ actor: { type: "api_key" }, after: { code: "policy_tests_failed", message: "oops" } });
  });

  test("a published version records its parent; the diff shows what it changes", async () => {
    const data = JSON.parse(files["claiim/data.json"]);
    data.skills.deploy.permits.push({ action: "rollback", resources: ["staging"] });
    const next = { ...files, "claiim/data.json": JSON.stringify(data, null, 2) + "\n", "claiim/notes.yaml": "owner: platform-security\n" };
    const v2 = (await publish({ files: next, message: "allow rollbacks on staging" }).expect(201)).body;
    expect(v2).toMatchObject({ version: 2, parent: 1, active: false, warnings: [] });
    const diff = (await s.http.get("/v1/policies/2/diff").set(admin()).expect(200)).body;
    expect(diff).toMatchObject({ from: 1, to: 2, added: ["claiim/notes.yaml"], removed: [], unchanged: 2 });
    expect(diff.changed).toHaveLength(1);
    expect(diff.changed[0].file).toBe("claiim/data.json");
    expect(diff.changed[0].diff).toMatch(/^\+.*"rollback"/m);
    const back = (await s.http.get("/v1/policies/1/diff?against=2").set(admin()).expect(200)).body;
    expect(back).toMatchObject({ from: 2, to: 1, removed: ["claiim/notes.yaml"] });
    expect((await s.http.get("/v1/policies/1/diff").set(admin()).expect(400)).body.code).toBe("policy_no_parent");
    expect((await s.http.get("/v1/policies/9/diff").set(admin()).expect(404)).body.code).toBe("policy_version_not_found");
  });

  test("claiim publish (make publish-policy) publishes a folder, and prints OPA's refusal when there is one", async () => {
    const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "rego-"));
    for (const [name, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
      fs.writeFileSync(path.join(dir, name), text);
    }
    const script = path.resolve(__dirname, "../../bin/claiim");
    const env = { ...process.env, CLAIIM_TOKEN: s.admin };
    const ok = await run(process.execPath, [script, "publish", "--dir", dir, "--url", s.claiim.url, "--message", "from a folder", "--activate"], { env });
    expect(ok.stdout).toMatch(/^published version \d+ \(\d+-sha256:[0-9a-f]{64}\), active; parent 1/);
    const shadowed = await run(process.execPath, [script, "publish", "--dir", dir, "--url", s.claiim.url, "--message", "try it in the shadow", "--shadow"], { env });
    expect(shadowed.stdout).toMatch(/published version (\d+) .*\nversion \1 is the shadow since /);
    await s.http.delete("/v1/policies/shadow").set(admin()).expect(204);
    fs.writeFileSync(path.join(dir, "claiim/decision.rego"), "package claiim\n\ndecision := {\n");
    const refused = await run(process.execPath, [script, "publish", "--dir", dir, "--url", s.claiim.url], { env }).catch((e: { code: number; stderr: string }) => e);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/refused \(422 policy_syntax_error\)[\s\S]*claiim\/decision\.rego:\d+:\d+: rego_parse_error/) });
  });

  test("a gzipped tar upload publishes; climbing paths, links, size bombs and non-archives are refused specifically", async () => {
    const entry = (name: string, body: Buffer | string, type: "File" | "SymbolicLink" = "File") => {
      const data = Buffer.from(body);
      const header = Buffer.alloc(512);
      new tar.Header({ path: name, type, size: type === "File" ? data.length : 0, mode: 0o644, mtime: new Date(0), linkpath: type === "SymbolicLink" ? "/etc/passwd" : undefined }).encode(header, 0);
      const padded = type === "File" ? Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]) : Buffer.alloc(0);
      return Buffer.concat([header, padded]);
    };
    const archive = (...entries: Buffer[]) => gzipSync(Buffer.concat([...entries, Buffer.alloc(1024)]));
    const upload = (body: Buffer, query = "message=from%20a%20tarball") =>
      s.http.post(`/v1/policies/archive?${query}`).set(admin()).set("Content-Type", "application/gzip").send(body);

    const good = archive(...Object.entries(files).map(([name, text]) => entry(name, text)));
    const published = await upload(good, "message=tarball&activate=true").expect(201);
    expect(published.body).toMatchObject({ message: "tarball", active: true, digest: expect.stringMatching(/^sha256:/) });

    const cases: [Buffer, number, string][] = [
      [archive(entry("../escape.rego", "package claiim\n")), 400, "archive_path_invalid"],
      [archive(entry("/etc/claiim.rego", "package claiim\n")), 400, "archive_path_invalid"],
      [archive(entry("claiim/link.rego", "", "SymbolicLink")), 400, "archive_entry_refused"],
      [archive(entry("claiim/bomb.json", Buffer.alloc(20 * 1024 * 1024))), 413, "archive_too_large"],
      [Buffer.from("not a gzip at all"), 400, "archive_invalid"],
    ];
    for (const [body, status, code] of cases) {
      const res = await upload(body);
      expect([code, res.status, res.body.code]).toEqual([code, status, code]);
    }
    expect((await upload(good, "").expect(400)).body.errors[0].path).toBe("message");
    await s.http.post("/v1/policies/archive?message=x").set(admin()).set("Content-Type", "application/json").send("{}").expect(400);
  });

  test("bundles are signed: a consistently forged row is refused, at activation and at start-up; a key rotation keeps old versions verifiable", async () => {
    const v = (await publish({ files, message: "to be forged" }).expect(201)).body.version;
    const [row] = await sql(s.claiim.db, "SELECT bundle FROM policy_bundles WHERE version = $1", [v]);
    const forged = await readBundle(Buffer.from(row.bundle as Uint8Array));
    const data = JSON.parse(forged.get("data.json")!.toString());
    data.claiim.skills.deploy.permits.push({ action: "deploy", resources: ["production"] });
    forged.set("data.json", Buffer.from(JSON.stringify(data)));
    const digest = contentDigest(forged);
    const revision = revisionOf(v, digest);
    forged.set(".manifest", Buffer.from(JSON.stringify({ ...JSON.parse(forged.get(".manifest")!.toString()), revision })));
    const bytes = await writeBundle(forged);
    await sql(s.claiim.db, "UPDATE policy_bundles SET bundle = $1, digest = $2, revision = $3, file_sha256 = $4 WHERE version = $5", [bytes, digest, revision, fileSha256(bytes), v]);
    const refused = await s.http.post(`/v1/policies/${v}/activate`).set(admin()).expect(422);
    expect(refused.body).toMatchObject({ code: "policy_activation_failed", detail: expect.stringMatching(/bundle signature invalid: .* does not match its signed hash/) });
    const status = (await s.http.get("/v1/policies/status").set(admin()).expect(200)).body;
    expect(status.active_version).not.toBe(v);
    expect(status.errors[0].message).toMatch(/bundle signature invalid/);

    // The bundle file written for OPA tooling verifies with the OPA CLI and the published public key.
    const keys = (await s.http.get("/v1/policies/signing-keys").set(admin()).expect(200)).body.keys;
    expect(keys).toEqual([expect.objectContaining({ kid: status.active_signed_by, alg: "ES256", current: true, public_key_pem: expect.stringMatching(/^-----BEGIN PUBLIC KEY-----/) })]);
    const keyFile = path.join(process.env.CLAIIM_TEST_TMP!, `bundle-key-${kind}-${Date.now()}.pem`);
    fs.writeFileSync(keyFile, keys[0].public_key_pem);
    await run(OPA_BIN, ["build", "-b", path.join(s.config.bundleDir, `${status.active_version}.tar.gz`), "--verification-key", keyFile, "--signing-alg", "ES256", "-o", `${keyFile}.out.tar.gz`]);

    const rotated = (await s.http.post("/v1/policies/signing-keys/rotate").set(admin()).send({ reason: "scheduled" }).expect(200)).body;
    expect(rotated).toEqual({ kid: expect.any(String), previous: keys[0].kid });
    const jwks = (await s.http.get("/.well-known/jwks.json").expect(200)).body.keys.map((k: { kid: string }) => k.kid);
    expect(jwks).toEqual(expect.arrayContaining([keys[0].kid, rotated.kid]));
    const fresh = (await publish({ files, message: "signed by the new key", activate: true }).expect(201)).body;
    expect((await s.http.get("/v1/policies/status").set(admin())).body.active_signed_by).toBe(rotated.kid);
    await s.http.post(`/v1/policies/${status.active_version}/activate`).set(admin()).expect(200);
    expect((await s.http.get("/v1/policies/status").set(admin())).body.active_signed_by).toBe(keys[0].kid);
    await s.http.post(`/v1/policies/${fresh.version}/activate`).set(admin()).expect(200);

    // At start-up, an active version whose row was forged is not loaded: not ready rather than unverified.
    await sql(s.claiim.db, "UPDATE policy_bundles SET bundle = $1, digest = $2, revision = $3, file_sha256 = $4 WHERE version = $5", [bytes, digest, revisionOf(fresh.version, digest), fileSha256(bytes), fresh.version]);
    await s.restart();
    await s.http.get("/readyz").expect(503);
    expect((await s.http.get("/v1/policies/status").set(admin())).body).toMatchObject({ active_version: null, errors: [{ message: expect.stringMatching(/bundle signature invalid|manifest revision/) }] });
    await s.http.post(`/v1/policies/${status.active_version}/activate`).set(admin()).expect(200);
    await s.http.get("/readyz").expect(200);
    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.map((r: { type: string }) => r.type);
    expect(events).toEqual(expect.arrayContaining(["signing_key.rotated", "policy.activation_failed"]));
  });

  test("a tampered bundle file under bundles/ is found at start-up, kept aside and replaced by the verified copy", async () => {
    const { active_version: v } = (await s.http.get("/v1/policies/status").set(admin())).body;
    const file = path.join(s.config.bundleDir, `${v}.tar.gz`);
    const genuine = fs.readFileSync(file);
    fs.writeFileSync(file, Buffer.from("not the bundle CLAIIM signed"));
    await s.restart();
    await s.http.get("/readyz").expect(200);
    expect(fs.readFileSync(file).equals(genuine)).toBe(true);
    expect((await s.http.get("/v1/policies/status").set(admin())).body).toMatchObject({ active_version: v, errors: [{ message: expect.stringMatching(/differed from the verified copy/) }] });
    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records;
    expect(events.pop()).toMatchObject({ type: "policy.bundle_file_replaced", actor: { type: "system", id: "startup" } });
  });

  test("formatting that opa fmt would change is a warning with the diff", async () => {
    const sloppy = { ...files, "claiim/decision.rego": files["claiim/decision.rego"].replace("skill_name := input.request.skill.name", "skill_name:=input.request.skill.name") };
    const res = (await publish({ files: sloppy, message: "sloppy" }).expect(201)).body;
    expect(res.warnings).toEqual([{ file: "claiim/decision.rego", code: "opa_fmt", message: expect.any(String), diff: expect.stringContaining("+skill_name := input.request.skill.name") }]);
  });
});

describe.each(databaseKinds())("CLAIIM as the bundle server of an OPA sidecar, on %s", (kind) => {
  let s: TestServer;
  let opa: ChildProcess | null = null;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
  });
  afterAll(async () => {
    opa?.kill("SIGTERM");
    await s?.stop();
  });

  test("serves the active version as a standard bundle with its revision as ETag", async () => {
    const status = (await s.http.get("/v1/policies/status").set(admin())).body;
    const res = await s.http.get("/v1/bundles/claiim").set(admin()).buffer(true).parse((r, cb) => {
      const chunks: Buffer[] = [];
      r.on("data", (c: Buffer) => chunks.push(c));
      r.on("end", () => cb(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(200);
    expect(res.headers.etag).toBe(`"${status.active_revision}"`);
    const bundle = await readBundle(res.body as Buffer);
    expect([...bundle.keys()].some((e) => e.endsWith("decision.rego"))).toBe(true);
    expect([...bundle.keys()].some((e) => e.endsWith("_test.rego"))).toBe(false);
    expect(JSON.parse(bundle.get(".manifest")!.toString()).revision).toBe(status.active_revision);
    await s.http.get("/v1/bundles/claiim").set(admin()).set("If-None-Match", res.headers.etag).expect(304);
    expect((await s.http.get("/v1/bundles/other").set(admin()).expect(404)).body.code).toBe("bundle_not_found");
  });

  test("a real `opa run --server` pulling from CLAIIM verifies the bundle signature and gives the decision CLAIIM gave", async () => {
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
    const token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    const sidecarKey = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "opa sidecar", role: "auditor" }).expect(201)).body.secret;

    const [signing] = (await s.http.get("/v1/policies/signing-keys").set(admin()).expect(200)).body.keys;
    const sidecar = (publicKeyPem: string) => {
      const dir = fs.mkdtempSync(path.join(process.env.CLAIIM_TEST_TMP!, "sidecar-"));
      const config = path.join(dir, "opa.yaml");
      fs.writeFileSync(
        config,
        [
          "services:",
          "  claiim:",
          `    url: ${s.claiim.url}`,
          "    credentials:",
          "      bearer:",
          `        token: "${sidecarKey}"`,
          // The sidecar trusts CLAIIM's bundle-signing key by kid, and refuses any bundle it did not sign.
          "keys:",
          `  ${signing.kid}:`,
          "    algorithm: ES256",
          "    key: |",
          ...publicKeyPem.trim().split("\n").map((l: string) => `      ${l}`),
          "bundles:",
          "  claiim:",
          "    service: claiim",
          "    resource: /v1/bundles/claiim",
          "    signing:",
          "      exclude_files: []",
          "    polling:",
          "      min_delay_seconds: 1",
          "      max_delay_seconds: 2",
          "",
        ].join("\n"),
      );
      const port = 20000 + Math.floor(Math.random() * 20000);
      const child = spawn(OPA_BIN, ["run", "--server", "--addr", `127.0.0.1:${port}`, "--config-file", config], { stdio: "ignore" });
      return { child, base: `http://127.0.0.1:${port}` };
    };
    const loaded = async (base: string, tries: number) => {
      for (let i = 0; i < tries; i++) {
        if ((await fetch(`${base}/health?bundles`).catch(() => null))?.ok) return true;
        await new Promise((r) => setTimeout(r, 100));
      }
      return false;
    };

    const impostor = sidecar(generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "pem", type: "spki" }) as string);
    try {
      expect(await loaded(impostor.base, 30)).toBe(false);
    } finally {
      impostor.child.kill("SIGTERM");
    }
    const trusted = sidecar(signing.public_key_pem);
    opa = trusted.child;
    const base = trusted.base;
    if (!(await loaded(base, 100))) throw new Error("the OPA sidecar did not load CLAIIM's signed bundle");
    for (const resource of ["staging", "production"]) {
      const claiim = (await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send({ action: "deploy", resource, purpose: "p", skill: { name: "deploy", version: "1.2.0" } }).expect(200)).body;
      const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [claiim.decision_id]);
      const input = JSON.parse(row.content as string).input;
      const answer = (await (await fetch(`${base}/v1/data/claiim/decision`, { method: "POST", body: JSON.stringify({ input }) })).json()) as { result: unknown };
      // The sidecar answers what the policy says; CLAIIM adds the approval it asks for to its own reply.
      expect(answer.result).toMatchObject({ allow: claiim.allow, reasons: claiim.reasons, reason_codes: claiim.reason_codes });
      expect("approval" in (answer.result as object)).toBe(claiim.decision === "approval_required");
    }
  });
});
