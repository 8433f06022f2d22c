/*
 * Issue 11, part 1, tried as a careless policy author would: a policy that loops or explodes is a
 * recorded deny within the deadline while /healthz, management routes and other decisions answer;
 * it is refused at publish and at activation when its tests or recent inputs exceed the budget; a
 * shadow or replay of it that keeps tripping the bounds is stopped and reported; and time.now_ns
 * is the decision's recorded clock, so replay and shadow reproduce decisions exactly.
 */
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { careless, withoutTests } from "../support/policies";
import { sql } from "../support/sql";

const DEADLINE_MS = 150;
const deploy = (resource: string) => ({ action: "deploy", resource, purpose: "release", skill: { name: "deploy", version: "1.2.0" } });

describe.each(databaseKinds())("evaluation bounds on %s", (kind) => {
  let s: TestServer;
  let token: string;
  let reference: Record<string, string>;
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const decide = async (resource: string) => (await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(deploy(resource)).expect(200)).body;
  const record = async (decisionId: string) => {
    const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [decisionId]);
    return JSON.parse(row.content as string);
  };
  const events = async (type: string) => (await sql(s.claiim.db, "SELECT content FROM chron_records WHERE kind = 'event'")).map((r) => JSON.parse(r.content as string)).filter((e) => e.type === type);
  const publish = (files: Record<string, string>, activate = false) => s.http.post("/v1/policies").set(admin()).send({ files, message: "careless", activate });
  const activate = (version: number) => s.http.post(`/v1/policies/${version}/activate`).set(admin()).send({});
  const status = async () => (await s.http.get("/v1/policies/status").set(admin()).expect(200)).body;

  beforeAll(async () => {
    s = await startTestServer(kind, { env: { CLAIIM_EVAL_TIMEOUT_MS: String(DEADLINE_MS) } });
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
    token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
    reference = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("a policy that loops is a recorded deny within the deadline; health, management and other decisions answer; rollback works, after a restart too", async () => {
    await decide("staging");
    // Accepted: neither its tests nor any recorded decision takes the slow path.
    const { version } = (await publish(careless(reference), true).expect(201)).body;
    const started = Date.now();
    const slow = s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(deploy("slow"));
    const [slowReply, health, other, versions] = await Promise.all([slow, s.http.get("/healthz"), s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(deploy("staging")), s.http.get("/v1/policies").set(admin())]);
    expect(health.status).toBe(200);
    expect(other.body).toMatchObject({ decision: "allow", policy: { version } });
    expect(versions.status).toBe(200);
    expect(slowReply.status).toBe(200);
    expect(slowReply.body).toMatchObject({ decision: "deny", reasons: [`policy evaluation stopped: the policy did not finish within the deadline of ${DEADLINE_MS} ms`], policy: { version } });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await record(slowReply.body.decision_id)).toMatchObject({ decision: "deny", reasons: slowReply.body.reasons, resource: "slow" });
    expect((await status()).evaluation).toMatchObject({ timeout_ms: DEADLINE_MS, timeouts: expect.any(Number), worker_restarts: expect.any(Number) });
    expect((await status()).evaluation.timeouts).toBeGreaterThanOrEqual(1);

    // After a restart the careless version is still active, and still bounded; rolling back answers.
    await s.restart();
    expect((await decide("slow")).reasons).toEqual([`policy evaluation stopped: the policy did not finish within the deadline of ${DEADLINE_MS} ms`]);
    await activate(1).expect(200);
    expect((await decide("slow")).reasons).toEqual(['no rule permits action "deploy" on resource "slow" under skill "deploy"']);
  });

  test("the budget gate refuses at publish a policy whose own tests exceed the deadline, naming the test and the time", async () => {
    const files = careless(reference);
    files["claiim/slow_test.rego"] = 'package claiim_slow_test\n\nimport data.claiim\n\ntest_slow_is_denied if not claiim.decision.allow with input as {"agent": {"status": "active", "skills": {"deploy": {"version": "1.2.0"}}}, "accountable_human": {"status": "active"}, "request": {"action": "deploy", "resource": "slow", "skill": {"name": "deploy", "version": "1.2.0"}}}\n';
    const versionsBefore = (await s.http.get("/v1/policies").set(admin())).body.versions.length;
    const res = await publish(files).expect(422);
    expect(res.body).toMatchObject({ code: "policy_too_slow", test: "claiim_slow_test/test_slow_is_denied", bound: "timeout" });
    expect(res.body.detail).toMatch(new RegExp(`did not finish within the evaluation deadline of ${DEADLINE_MS} ms \\(stopped after \\d+ ms\\) on the input of its test data\\.claiim_slow_test\\.test_slow_is_denied`));
    expect((await s.http.get("/v1/policies").set(admin())).body.versions.length).toBe(versionsBefore);
    expect((await events("policy.publish_refused")).pop()).toMatchObject({ after: { code: "policy_too_slow" } });
  });

  test("the budget gate refuses at publish and at activation a policy too slow on the inputs of recent decisions, naming the decision", async () => {
    const recent = await decide("production");
    const res = await publish(careless(reference, "true")).expect(422);
    expect(res.body).toMatchObject({ code: "policy_too_slow", bound: "timeout", decision_id: expect.any(String), seq: expect.any(Number) });
    expect(res.body.detail).toMatch(/on the input of recorded decision \d+ \(.+: agent deploy-bot, action deploy on .+\)/);

    // Published while no recorded input took its slow path; refused at activation once one does.
    const { version } = (await publish(careless(reference, 'input.request.resource == "canary"')).expect(201)).body;
    const canary = await decide("canary");
    const refused = await activate(version).expect(422);
    expect(refused.body).toMatchObject({ code: "policy_too_slow", decision_id: canary.decision_id });
    expect((await status()).active_version).not.toBe(version);
    expect((await events("policy.activation_refused")).pop()).toMatchObject({ subject: { id: String(version) }, after: { code: "policy_too_slow" } });
    // Production deploys ask for a human's approval: the gate used that recorded input all the same.
    expect(recent.decision).toBe("approval_required");
  });

  test("a shadow that keeps exceeding the deadline is stopped, in Chron and in the status; the active version decides meanwhile", async () => {
    await activate(1).expect(200);
    const { version } = (await publish(careless(reference, 'input.request.resource == "shadowed"')).expect(201)).body;
    await s.http.put("/v1/policies/shadow").set(admin()).send({ version }).expect(200);
    const first = await decide("shadowed");
    expect(first.reasons).toEqual(['no rule permits action "deploy" on resource "shadowed" under skill "deploy"']);
    expect((await record(first.decision_id)).shadow).toMatchObject({ version, decision: "deny", agrees: true });
    await decide("shadowed");
    await decide("shadowed");
    for (let i = 0; (await status()).shadow !== null; i++) {
      if (i > 100) throw new Error("the shadow was not stopped");
      await new Promise((r) => setTimeout(r, 50));
    }
    const st = await status();
    expect(st.errors[0].message).toMatch(new RegExp(`^shadow policy version ${version} stopped: 3 of its evaluations exceeded the evaluation deadline`));
    expect((await events("policy.shadow_stopped")).pop()).toMatchObject({ actor: { type: "system", id: "evaluation-bounds" }, subject: { id: String(version) }, after: { shadow_version: null, bounds_exceeded: 3 } });
    expect((await decide("staging")).decision).toBe("allow");
  });

  test("a replay that keeps exceeding the deadline is stopped, in Chron and in the status", async () => {
    // Published before any recorded input takes its slow path, then replayed over such inputs.
    const { version } = (await publish(careless(reference, 'input.request.resource == "replayed"')).expect(201)).body;
    const from = new Date(Date.now() - 1000).toISOString();
    for (let i = 0; i < 4; i++) await decide("replayed");
    const started = (await s.http.post(`/v1/policies/${version}/replay`).set(admin()).send({ from }).expect(202)).body;
    let job = started;
    for (let i = 0; job.state === "running"; i++) {
      if (i > 400) throw new Error("the replay did not stop");
      await new Promise((r) => setTimeout(r, 50));
      job = (await s.http.get(`/v1/policies/replays/${started.id}`).set(admin()).expect(200)).body;
    }
    // Stopped at the third; the fourth input's evaluation may already be under way then, and trip too.
    expect(job).toMatchObject({ state: "failed" });
    expect(job.bounds_exceeded).toBeGreaterThanOrEqual(3);
    expect(job.bounds_exceeded).toBeLessThanOrEqual(4);
    expect(job.error).toMatch(/stopped: 3 evaluations exceeded the evaluation deadline or memory limit/);
    expect((await events("policy.replay_stopped")).pop()).toMatchObject({ actor: { id: "evaluation-bounds" }, subject: { type: "replay", id: started.id } });
    expect((await status()).errors[0].message).toBe(job.error);
  });

  test("time.now_ns is the decision's recorded timestamp, so a shadow and a replay reproduce the decision", async () => {
    await activate(1).expect(200);
    const files = withoutTests(reference);
    const permit = 'decision := {"allow": true, "reasons": [permit_reason], "reason_codes": ["permitted_by_skill"]}';
    expect(files["claiim/decision.rego"]).toContain(permit);
    files["claiim/decision.rego"] = files["claiim/decision.rego"].replace(permit, 'decision := {"allow": true, "reasons": [permit_reason, sprintf("at %d", [time.now_ns()])], "reason_codes": ["permitted_by_skill", "clock"]}');
    const { version } = (await publish(files, true).expect(201)).body;
    await s.http.put("/v1/policies/shadow").set(admin()).send({ version: 1 }).expect(200);
    const from = new Date(Date.now() - 1000).toISOString();
    const d = await decide("staging");
    expect(d.reasons[1]).toBe(`at ${BigInt(Date.parse(d.timestamp)) * 1_000_000n}`);
    await s.http.delete("/v1/policies/shadow").set(admin()).expect(204);
    const started = (await s.http.post(`/v1/policies/${version}/replay`).set(admin()).send({ from }).expect(202)).body;
    let job = started;
    while (job.state === "running") {
      await new Promise((r) => setTimeout(r, 25));
      job = (await s.http.get(`/v1/policies/replays/${started.id}`).set(admin()).expect(200)).body;
    }
    expect(job).toMatchObject({ state: "done", unchanged: job.progress.processed, bounds_exceeded: 0 });
  });
});

describe.each(databaseKinds())("memory limit on %s", (kind) => {
  let s: TestServer;
  afterAll(async () => {
    await s?.stop();
  });

  test("a policy that explodes in memory is a recorded deny that says so, and the server carries on", async () => {
    s = await startTestServer(kind, { env: { CLAIIM_EVAL_TIMEOUT_MS: "20000", CLAIIM_EVAL_MAX_MEMORY_MB: "64" } });
    const admin = { Authorization: `Bearer ${s.admin}` };
    await s.http.post("/v1/organizations").set(admin).send({ slug: "acme", name: "Acme" }).expect(201);
    await s.http.post("/v1/humans").set(admin).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201);
    const agent = (await s.http.post("/v1/agents").set(admin).send({ organization: "acme", name: "deploy-bot", owner: "alice@acme.example", skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
    const token = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin).send({}).expect(201)).body.token;
    const files = careless((await s.http.get("/v1/policies/1").set(admin).expect(200)).body.files);
    // Fifty million numbers: far more than 64 MiB of memory, long before 20 s.
    files["claiim/slow.rego"] = files["claiim/slow.rego"].replace("10000000", "50000000");
    await s.http.post("/v1/policies").set(admin).send({ files, message: "explodes", activate: true }).expect(201);
    const res = await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(deploy("slow")).expect(200);
    expect(res.body).toMatchObject({ decision: "deny" });
    expect(res.body.reasons[0]).toMatch(/^policy evaluation stopped: .*memory.* limit/);
    const status = (await s.http.get("/v1/policies/status").set(admin).expect(200)).body;
    expect(status.evaluation).toMatchObject({ max_memory_mb: 64 });
    expect(status.evaluation.memory_exceeded).toBeGreaterThanOrEqual(1);
    expect((await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${token}` }).send(deploy("staging")).expect(200)).body.decision).toBe("allow");
  });
});
