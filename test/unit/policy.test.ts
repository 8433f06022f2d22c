import fs from "node:fs";
import os from "node:os";
import * as tar from "tar";
import path from "node:path";
import { OpaCliCompiler } from "../../src/policy/opa-compiler";
import { FakePolicyStore } from "../support/fakes/policy-store";
import { PolicyEngine } from "../../src/policy/policy-engine";
import { PolicyService } from "../../src/policy/policy-service";
import { readPolicyDir } from "../../src/policy/policy-views";
import { contentDigest, fileSha256, readBundle, revisionOf, writeBundle } from "../../src/policy/bundle";
import { createLogger } from "../../src/lib/logger";
import { OPA_BIN } from "../support/fake-core";
import { testPool } from "../support/pool";
import { fakeChron, TESTER } from "../support/recorder";
import { FakeIdentityStore } from "../support/fakes/identity-store";
import { FakeChronStore } from "../support/fakes/chron-store";
import { SigningKeys } from "../../src/keys/signing-keys";
import { BundleSigner } from "../../src/policy/bundle-signing";

const REGO = path.resolve(__dirname, "../../rego");

async function setup() {
  const store = new FakePolicyStore();
  const engine = new PolicyEngine(await testPool());
  const bundleDir = fs.mkdtempSync(path.join(os.tmpdir(), "claiim-bundles-"));
  const keyStore = new FakeIdentityStore();
  const chron = fakeChron(store, keyStore);
  const signer = new BundleSigner(new SigningKeys("bundle-signing"), keyStore, chron.record);
  await signer.start();
  const service = new PolicyService({ store, compiler: new OpaCliCompiler(OPA_BIN), engine, signer, bundleDir, record: chron.record, logger: createLogger("silent"), chron: chron.store });
  return { store, engine, service, bundleDir, chron, signer, keyStore };
}

describe("PolicyService with the real OPA compiler", () => {
  test("first start publishes and activates rego/ as version 1 with a digest-stamped revision", async () => {
    const { store, engine, service, bundleDir } = await setup();
    await service.start(REGO);
    const active = engine.active()!;
    expect(active.version).toBe(1);
    expect(active.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(active.revision).toBe(`1-${active.digest}`);
    const files = await readBundle(fs.readFileSync(path.join(bundleDir, "1.tar.gz")));
    expect(JSON.parse(files.get(".manifest")!.toString())).toMatchObject({
      revision: active.revision,
      wasm: [{ entrypoint: "claiim/decision", module: "/policy.wasm" }],
    });
    expect([...files.keys()].some((f) => f.endsWith("_test.rego"))).toBe(false);
    // Entries are rooted at "/" as opa build writes them, or OPA's loader cannot find /policy.wasm.
    const entries: string[] = [];
    await tar.t({ file: path.join(bundleDir, "1.tar.gz"), onReadEntry: (e) => void entries.push(e.path) });
    expect(entries.sort()).toEqual(["/.manifest", "/.signatures.json", "/claiim/decision.rego", "/data.json", "/policy.wasm"]);
    expect(store.current).toMatchObject({ activeVersion: 1, activatedBy: "system:bootstrap" });
  });

  test.each([
    ["policy_syntax_error", { "claiim/decision.rego": "package claiim\ndecision := {\n" }, "claiim/decision.rego", 3, "rego_parse_error"],
    ["policy_builtin_unsupported", { "claiim/decision.rego": 'package claiim\ndecision := http.send({"method": "get", "url": "http://example.com"})\n' }, "claiim/decision.rego", 2, "rego_type_error"],
    ["policy_compile_failed", { "claiim/decision.rego": 'package claiim\ndecision := {"allow": x}\n' }, "claiim/decision.rego", 2, "rego_unsafe_var_error"],
    [
      "policy_package_conflict",
      { "claiim/decision.rego": 'package claiim\n\ndecision := {"allow": true, "reasons": []}\n', "claiim/decision/x.rego": "package claiim.decision\n\nx := 1\n" },
      expect.stringMatching(/^claiim\//),
      expect.any(Number),
      "rego_type_error",
    ],
  ])("%s: refused with OPA's file and line; nothing stored, the active version stays", async (code, files, file, row, opaCode) => {
    const { store, engine, service, chron } = await setup();
    await service.start(REGO);
    await expect(service.publish({ files, message: "m", activate: true }, TESTER)).rejects.toMatchObject({
      status: 422,
      code,
      extra: { opa_errors: expect.arrayContaining([expect.objectContaining({ file, row, code: opaCode })]) },
    });
    expect(store.bundles.size).toBe(1);
    expect(engine.active()!.version).toBe(1);
    expect(chron.events().pop()).toMatchObject({ type: "policy.publish_refused", after: { code } });
  });

  test("the set's own tests are a gate: a failing test refuses the version, by name and place", async () => {
    const { store, engine, service, chron } = await setup();
    await service.start(REGO);
    const files = await readPolicyDir(REGO);
    files["claiim/extra_test.rego"] = 'package claiim_extra_test\n\nimport data.claiim\n\ntest_production_is_allowed if claiim.decision.allow with input as {}\n';
    await expect(service.publish({ files, message: "m", activate: true }, TESTER)).rejects.toMatchObject({
      status: 422,
      code: "policy_tests_failed",
      extra: { failing_tests: [{ name: "data.claiim_extra_test.test_production_is_allowed", file: "claiim/extra_test.rego", row: 5 }] },
    });
    expect(store.bundles.size).toBe(1);
    expect(engine.active()!.version).toBe(1);
    expect(chron.events().map((e) => e.type)).toContain("policy.publish_refused");
  });

  test("formatting that opa fmt would change is a warning, with the diff, not a refusal", async () => {
    const { service } = await setup();
    await service.start(REGO);
    const files = await readPolicyDir(REGO);
    files["claiim/decision.rego"] = files["claiim/decision.rego"].replace("skill_name := input.request.skill.name", "skill_name:=input.request.skill.name");
    const published = await service.publish({ files, message: "m", activate: false }, TESTER);
    expect(published.version).toBe(2);
    expect(published.warnings).toEqual([{ file: "claiim/decision.rego", code: "opa_fmt", message: expect.any(String), diff: expect.stringContaining("+skill_name := input.request.skill.name") }]);
  });

  test("a policy without the decision entrypoint is refused", async () => {
    const { service } = await setup();
    await expect(service.publish({ files: { "other.rego": "package other\nx := 1\n" }, message: "m", activate: false }, TESTER)).rejects.toMatchObject({ status: 422 });
  });

  test("publishing does not activate unless asked; activation swaps atomically", async () => {
    const { engine, service } = await setup();
    await service.start(REGO);
    const before = engine.active()!;
    const v2 = await service.publish({ files: await readPolicyDir(REGO), message: "same again", activate: false }, TESTER);
    expect(v2).toMatchObject({ version: 2, active: false, digest: before.digest });
    expect(engine.active()).toBe(before);
    await service.activate(2, TESTER);
    expect(engine.active()!.version).toBe(2);
    expect((await service.reads.status()).active_revision).toBe(v2.revision);
  });

  test.each([
    ["archive bytes", (b: { bundle: Buffer }) => { b.bundle = Buffer.from(b.bundle); b.bundle[b.bundle.length - 5] ^= 0xff; }, /archive hash/],
    ["recorded digest", (b: { digest: string }) => { b.digest = `sha256:${"0".repeat(64)}`; }, /content digest/],
  ])("a stored bundle whose %s changed is refused at activation; the old one stays", async (_what, tamper, why) => {
    const { store, engine, service } = await setup();
    await service.start(REGO);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    tamper(store.bundles.get(2)! as never);
    await expect(service.activate(2, TESTER)).rejects.toMatchObject({ status: 422, code: "policy_activation_failed", message: expect.stringMatching(why) });
    expect(engine.active()!.version).toBe(1);
    expect((await service.reads.status()).errors[0].message).toMatch(why);
  });

  test("a bundle rebuilt with other content is refused; forged consistently (hashes, revision, manifest recomputed), by its signature", async () => {
    const { store, engine, service } = await setup();
    await service.start(REGO);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    const stored = store.bundles.get(2)!;
    const files = await readBundle(stored.bundle);
    files.set("data.json", Buffer.from(JSON.stringify({ claiim: { skills: {} } })));
    stored.bundle = await writeBundle(files);
    await expect(service.activate(2, TESTER)).rejects.toMatchObject({ code: "policy_activation_failed", message: expect.stringMatching(/archive hash/) });
    const digest = contentDigest(files);
    const revision = revisionOf(2, digest);
    files.set(".manifest", Buffer.from(JSON.stringify({ ...JSON.parse(files.get(".manifest")!.toString()), revision })));
    stored.bundle = await writeBundle(files);
    Object.assign(stored, { digest, revision, fileSha256: fileSha256(stored.bundle) });
    await expect(service.activate(2, TESTER)).rejects.toMatchObject({ code: "policy_activation_failed", message: expect.stringMatching(/bundle signature invalid: .* does not match its signed hash/) });
    expect(engine.active()!.version).toBe(1);
    expect((await service.reads.status()).errors[0].message).toMatch(/bundle signature invalid/);
  });

  test("a bundle file under bundles/ that differs from the verified copy is moved aside, replaced and reported at activation", async () => {
    const { service, bundleDir, chron } = await setup();
    await service.start(REGO);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    const file = path.join(bundleDir, "2.tar.gz");
    const genuine = fs.readFileSync(file);
    fs.writeFileSync(file, Buffer.concat([genuine, Buffer.from("tampered")]));
    await service.activate(2, TESTER);
    expect(fs.readFileSync(file).equals(genuine)).toBe(true);
    expect(fs.readdirSync(bundleDir).filter((f) => f.startsWith("2.tar.gz.rejected-"))).toHaveLength(1);
    expect((await service.reads.status()).errors[0].message).toMatch(/2.tar.gz differed from the verified copy of version 2/);
    expect(chron.events().map((e) => e.type)).toContain("policy.bundle_file_replaced");
    fs.rmSync(file);
    await service.activate(2, TESTER);
    expect(fs.readFileSync(file).equals(genuine)).toBe(true);
  });

  test("a bundle signed by a key CLAIIM never held, or with its signature removed, is refused", async () => {
    const { store, service } = await setup();
    await service.start(REGO);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    const stored = store.bundles.get(2)!;
    const stranger = await setup();
    const resigned = await stranger.signer.sign(await readBundle(stored.bundle));
    stored.bundle = await writeBundle(resigned);
    stored.fileSha256 = fileSha256(stored.bundle);
    await expect(service.activate(2, TESTER)).rejects.toMatchObject({ message: expect.stringMatching(/signed by unknown key/) });
    resigned.delete(".signatures.json");
    stored.bundle = await writeBundle(resigned);
    stored.fileSha256 = fileSha256(stored.bundle);
    await expect(service.activate(2, TESTER)).rejects.toMatchObject({ message: expect.stringMatching(/has no .signatures.json/) });
  });

  test("after a rotation new versions are signed by the new key, and versions signed by the old one still activate", async () => {
    const { service, chron, engine } = await setup();
    await service.start(REGO);
    const [first] = service.reads.signingKeys();
    const rotated = await service.rotateSigningKey(TESTER, "yearly rotation");
    expect(rotated).toEqual({ kid: expect.any(String), previous: first.kid });
    const keys = service.reads.signingKeys();
    expect(keys.map((k) => [k.kid, k.current])).toEqual([[first.kid, false], [rotated.kid, true]]);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: true }, TESTER);
    expect((await service.reads.status()).active_signed_by).toBe(rotated.kid);
    await service.activate(1, TESTER);
    expect(engine.active()!.signedBy).toBe(first.kid);
    expect(chron.events().find((e) => e.type === "signing_key.rotated")).toMatchObject({ reason: "yearly rotation", before: { signing_kid: first.kid }, after: { signing_kid: rotated.kid } });
  });

  test("shadow mode: a published version runs beside the active one until stopped, or until it is activated", async () => {
    const { store, engine, service, chron, signer } = await setup();
    await service.start(REGO);
    await expect(service.shadows.setShadow(1, TESTER)).rejects.toMatchObject({ status: 409, code: "shadow_is_active" });
    await expect(service.shadows.setShadow(7, TESTER)).rejects.toMatchObject({ status: 404, code: "policy_version_not_found" });
    await expect(service.shadows.stopShadow(TESTER)).rejects.toMatchObject({ status: 404, code: "no_shadow" });
    await expect(service.shadows.shadowReport({ orgId: null, samples: 5 })).rejects.toMatchObject({ code: "no_shadow" });
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    const view = await service.shadows.setShadow(2, TESTER);
    expect(view).toMatchObject({ version: 2, set_by: "api_key:k-test" });
    expect(engine.shadow()!.version).toBe(2);
    expect(engine.active()!.version).toBe(1);
    expect((await service.reads.status()).shadow).toMatchObject({ version: 2, evaluating: true });

    // A restart resumes the shadow from the stored state.
    const again = new PolicyEngine(await testPool());
    await new PolicyService({ store, compiler: new OpaCliCompiler(OPA_BIN), engine: again, signer, bundleDir: os.tmpdir(), record: fakeChron().record, logger: createLogger("silent"), chron: new FakeChronStore() }).start(REGO);
    expect([again.active()!.version, again.shadow()!.version]).toEqual([1, 2]);

    await service.activate(2, TESTER);
    expect([engine.active()!.version, engine.shadow()]).toEqual([2, null]);
    expect(store.current.shadow).toBeNull();
    await service.shadows.setShadow(1, TESTER);
    await service.shadows.stopShadow(TESTER);
    expect(engine.shadow()).toBeNull();
    expect(chron.events().map((e) => e.type).filter((t) => t.startsWith("policy.shadow"))).toEqual(["policy.shadow_started", "policy.shadow_started", "policy.shadow_stopped"]);
    await expect(service.shadows.shadowReport({ version: 1, orgId: null, samples: 5 })).rejects.toMatchObject({ code: "shadow_window_required" });
  });

  test("a shadow whose bundle no longer verifies is not evaluated after a restart; the active version runs on, and the status says why", async () => {
    const { store, service, signer } = await setup();
    await service.start(REGO);
    await service.publish({ files: await readPolicyDir(REGO), message: "v2", activate: false }, TESTER);
    await service.shadows.setShadow(2, TESTER);
    store.bundles.get(2)!.fileSha256 = "sha256:forged";
    const engine = new PolicyEngine(await testPool());
    const restarted = new PolicyService({ store, compiler: new OpaCliCompiler(OPA_BIN), engine, signer, bundleDir: os.tmpdir(), record: fakeChron().record, logger: createLogger("silent"), chron: new FakeChronStore() });
    await restarted.start(REGO);
    expect([engine.active()!.version, engine.shadow()]).toEqual([1, null]);
    const status = await restarted.reads.status();
    expect(status.shadow).toMatchObject({ version: 2, evaluating: false });
    expect(status.errors[0].message).toMatch(/^shadow not evaluated: .*archive hash/);
  });

  test("at start-up, a tampered active bundle is not loaded: nothing is active rather than something unverified", async () => {
    const { store, service, signer } = await setup();
    await service.start(REGO);
    store.bundles.get(1)!.fileSha256 = "sha256:forged";
    const engine = new PolicyEngine(await testPool());
    await new PolicyService({ store, compiler: new OpaCliCompiler(OPA_BIN), engine, signer, bundleDir: os.tmpdir(), record: fakeChron().record, logger: createLogger("silent"), chron: new FakeChronStore() }).start(REGO);
    expect(engine.active()).toBeNull();
    expect(store.current.lastError).toMatch(/archive hash/);
  });
});

describe("the reference policies, evaluated by the opa-wasm runtime CLAIIM uses", () => {
  let evaluate: (input: unknown) => Promise<{ allow: boolean; reasons: string[]; reason_codes: string[]; approval?: unknown }>;

  beforeAll(async () => {
    const { engine, service } = await setup();
    await service.start(REGO);
    const active = engine.active()!;
    evaluate = async (input) => {
      const outcome = await active.evaluate(input, 0n);
      if (!outcome.ok) throw new Error(outcome.message);
      return outcome.value as { allow: boolean; reasons: string[]; reason_codes: string[] };
    };
  });

  const input = (skill: string, action: string, resource: string, over: Record<string, unknown> = {}) => ({
    agent: { id: "a", name: "bot", status: "active", organization: "acme", skills: { [skill]: { version: "1.0.0" } } },
    accountable_human: { id: "h", name: "H", email: "h@x", status: "active" },
    request: { action, resource, purpose: "p", skill: { name: skill, version: "1.0.0" } },
    ...over,
  });

  const byHuman = { approvers: { accountable_human: true }, ttl_seconds: 3600 };
  test.each([
    ["DevOps", "deploy", "deploy", "staging", "permitted_by_skill", 'skill "deploy" permits "deploy" on "staging"'],
    ["DevOps", "deploy", "deploy", "production", "approval_required", "deploying to production requires a change approved by a human"],
    ["Support", "customer-support", "draft_response", "ticket/7", "permitted_by_skill", 'skill "customer-support" permits "draft_response" on "ticket/7"'],
    ["Support", "customer-support", "send_response", "ticket/7", "approval_required", "a customer response must be reviewed by a human before it is sent"],
    ["Finance", "finance-reporting", "read_report", "report/q3", "permitted_by_skill", 'skill "finance-reporting" permits "read_report" on "report/q3"'],
    ["Finance", "finance-reporting", "execute_payment", "vendor/42", "forbidden_by_skill", "payments are executed by a human in finance, never by an agent"],
    ["HR", "hr-assistant", "summarize_document", "policy-doc/leave", "permitted_by_skill", 'skill "hr-assistant" permits "summarize_document" on "policy-doc/leave"'],
    ["HR", "hr-assistant", "update_employee_record", "employee/9", "forbidden_by_skill", "employee records are sensitive: only HR staff may change them"],
    ["Legal", "legal-analysis", "analyze_document", "document/nda", "permitted_by_skill", 'skill "legal-analysis" permits "analyze_document" on "document/nda"'],
    ["Legal", "legal-analysis", "disclose_externally", "document/nda", "forbidden_by_skill", "external disclosure requires sign-off by counsel"],
    ["Code review", "code-review", "comment_pull_request", "repo/api", "permitted_by_skill", 'skill "code-review" permits "comment_pull_request" on "repo/api"'],
    ["Code review", "code-review", "merge_pull_request", "repo/api", "forbidden_by_skill", "merging requires approval by a human reviewer"],
  ])("%s: %s %s on %s is %s", async (_domain, skill, action, resource, code, reason) => {
    const expected = { allow: code === "permitted_by_skill", reasons: [reason], reason_codes: [code], ...(code === "approval_required" ? { approval: byHuman } : {}) };
    expect(await evaluate(input(skill, action, resource))).toEqual(expected);
  });

  test("identity denials read the same in WebAssembly as in opa test", async () => {
    const suspended = input("deploy", "deploy", "staging", { agent: { id: "a", name: "bot", status: "suspended", organization: "acme", skills: { deploy: { version: "1.0.0" } } } });
    expect(await evaluate(suspended)).toEqual({ allow: false, reasons: ['agent "bot" is suspended, not active'], reason_codes: ["agent_suspended"] });
    const orphan = input("deploy", "deploy", "staging", { accountable_human: null });
    expect(await evaluate(orphan)).toEqual({ allow: false, reasons: ['agent "bot" has no accountable human'], reason_codes: ["owner_missing"] });
    const unregistered = input("deploy", "deploy", "staging", { agent: { id: "a", name: "bot", status: "active", organization: "acme", skills: {} } });
    expect(await evaluate(unregistered)).toEqual({ allow: false, reasons: ['skill "deploy" is not registered for agent "bot"'], reason_codes: ["skill_not_registered"] });
    const version = input("deploy", "deploy", "staging");
    (version.request.skill as { version: string }).version = "2.0.0";
    expect(await evaluate(version)).toEqual({ allow: false, reasons: ['skill "deploy" version "2.0.0" is not the registered version "1.0.0"'], reason_codes: ["skill_version_mismatch"] });
    expect(await evaluate(input("deploy", "delete", "staging"))).toEqual({
      allow: false,
      reasons: ['no rule permits action "delete" on resource "staging" under skill "deploy"'],
      reason_codes: ["no_rule_permits"],
    });
    // A suspended agent asking for production is denied outright: no approval can lift a denial.
    const suspendedProd = input("deploy", "deploy", "production", { agent: { id: "a", name: "bot", status: "suspended", organization: "acme", skills: { deploy: { version: "1.0.0" } } } });
    expect(await evaluate(suspendedProd)).toEqual({ allow: false, reasons: ['agent "bot" is suspended, not active'], reason_codes: ["agent_suspended"] });
  });
});
