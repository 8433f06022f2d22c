import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { withoutTests } from "../support/policies";
import { sql } from "../support/sql";

const deploy = (resource: string) => ({ action: "deploy", resource, purpose: "release", skill: { name: "deploy", version: "1.2.0" } });

/** The reference policies with deploys flipped: staging frozen, production permitted. */
function flipped(files: Record<string, string>): Record<string, string> {
  const data = JSON.parse(files["claiim/data.json"]);
  data.skills.deploy.permits = [{ action: "deploy", resources: ["production"] }];
  data.skills.deploy.forbids = [{ action: "deploy", resources: ["staging"], reason: "staging is frozen for the migration" }];
  data.skills.deploy.requires_approval = [];
  return { ...withoutTests(files), "claiim/data.json": JSON.stringify(data, null, 2) + "\n" };
}

describe.each(databaseKinds())("shadow mode and replay on %s", (kind) => {
  let s: TestServer;
  let v2: number;
  const tokens: Record<string, string> = {};
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const decide = async (agent: string, resource: string) =>
    (await s.http.post("/v1/decisions").set({ Authorization: `Bearer ${tokens[agent]}` }).send(deploy(resource)).expect(200)).body;
  const record = async (decisionId: string) => {
    const [row] = await sql(s.claiim.db, "SELECT content FROM chron_records WHERE id = $1", [decisionId]);
    return JSON.parse(row.content as string);
  };
  const decisionCount = async () => Number((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records WHERE kind = 'decision'"))[0].n);

  beforeAll(async () => {
    s = await startTestServer(kind);
    for (const [org, owner, names] of [["acme", "alice@acme.example", ["deploy-bot", "release-bot"]], ["globex", "gina@globex.example", ["globex-bot"]]] as const) {
      await s.http.post("/v1/organizations").set(admin()).send({ slug: org, name: org }).expect(201);
      await s.http.post("/v1/humans").set(admin()).send({ organization: org, name: owner, email: owner }).expect(201);
      for (const name of names) {
        const agent = (await s.http.post("/v1/agents").set(admin()).send({ organization: org, name, owner, skills: [{ name: "deploy", version: "1.2.0" }] }).expect(201)).body;
        tokens[name] = (await s.http.post(`/v1/agents/${agent.id}/credentials`).set(admin()).send({}).expect(201)).body.token;
      }
    }
    const files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files;
    v2 = (await s.http.post("/v1/policies").set(admin()).send({ files: flipped(files), message: "freeze staging, open production" }).expect(201)).body.version;
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("replay shows what a version would change on recorded decisions, and changes nothing", async () => {
    const from = new Date(Date.now() - 1000).toISOString();
    await decide("deploy-bot", "staging");
    await decide("deploy-bot", "staging");
    const denied = await decide("deploy-bot", "production");
    await decide("release-bot", "staging");
    const before = { decisions: await decisionCount(), status: (await s.http.get("/v1/policies/status").set(admin())).body.active_version };

    const started = await s.http.post(`/v1/policies/${v2}/replay`).set(admin()).send({ from, max_records: 2 }).expect(202);
    expect(started.headers.location).toBe(`/v1/policies/replays/${started.body.id}`);
    expect(started.body).toMatchObject({ version: v2, state: "running", progress: { total: 4 } });
    let job = started.body;
    for (let i = 0; job.state === "running"; i++) {
      if (i > 200) throw new Error("the replay did not finish");
      await new Promise((r) => setTimeout(r, 25));
      job = (await s.http.get(started.headers.location).set(admin()).expect(200)).body;
    }
    expect(job).toMatchObject({ state: "done", progress: { processed: 4, total: 4 }, unchanged: 0, skipped: 0, redacted: 0, truncated: true });
    expect(job.allow_to_deny.count).toBe(3);
    expect(job.allow_to_deny.records).toHaveLength(2);
    expect(job.allow_to_deny.records[0]).toMatchObject({
      agent: { name: "deploy-bot" },
      action: "deploy",
      resource: "staging",
      recorded: { decision: "allow", policy_version: 1 },
      replayed: { decision: "deny", reasons: ["staging is frozen for the migration"] },
    });
    expect(job.deny_to_allow).toEqual({
      count: 1,
      records: [expect.objectContaining({ decision_id: denied.decision_id, recorded: expect.objectContaining({ decision: "approval_required" }), replayed: { decision: "allow", reasons: expect.any(Array) } })],
    });
    expect({ decisions: await decisionCount(), status: (await s.http.get("/v1/policies/status").set(admin())).body.active_version }).toEqual(before);
    expect((await s.http.get("/v1/policies/replays").set(admin()).expect(200)).body.replays[0].id).toBe(job.id);
    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records;
    expect(events.find((e: { type: string }) => e.type === "policy.replay_started")).toMatchObject({ actor: { type: "api_key" }, subject: { type: "replay", id: job.id }, after: { version: v2, decisions: 4 } });

    expect((await s.http.post(`/v1/policies/${v2}/replay`).set(admin()).send({ from, to: "2000-01-01T00:00:00Z" }).expect(400)).body.code).toBe("range_inverted");
    expect((await s.http.post("/v1/policies/99/replay").set(admin()).send({ from }).expect(404)).body.code).toBe("policy_version_not_found");
    expect((await s.http.post(`/v1/policies/${v2}/replay`).set(admin()).send({ from: "yesterday" }).expect(400)).body.code).toBe("validation_failed");
    expect((await s.http.get("/v1/policies/replays/00000000-0000-4000-8000-000000000000").set(admin()).expect(404)).body.code).toBe("replay_not_found");
  });

  test("a shadow is evaluated on every decision, recorded where it disagrees, never enforced; the report groups by action and agent", async () => {
    expect((await s.http.put("/v1/policies/shadow").set(admin()).send({ version: 1 }).expect(409)).body.code).toBe("shadow_is_active");
    const started = (await s.http.put("/v1/policies/shadow").set(admin()).send({ version: v2 }).expect(200)).body;
    expect(started).toMatchObject({ version: v2, set_by: expect.stringMatching(/^api_key:/) });

    const staging = await decide("deploy-bot", "staging");
    await decide("release-bot", "staging");
    const production = await decide("deploy-bot", "production");
    await decide("globex-bot", "staging");
    // Enforced: the active version's answers, with nothing of the shadow in the reply.
    expect([staging.decision, production.decision]).toEqual(["allow", "approval_required"]);
    expect(staging.policy.version).toBe(1);
    expect(JSON.stringify(staging)).not.toMatch(/shadow|frozen/);
    expect((await record(staging.decision_id)).shadow).toEqual({ version: v2, revision: expect.any(String), decision: "deny", agrees: false, reasons: ["staging is frozen for the migration"] });
    expect((await record(production.decision_id)).shadow).toMatchObject({ decision: "allow", agrees: false });

    const status = (await s.http.get("/v1/policies/status").set(admin()).expect(200)).body;
    expect(status).toMatchObject({ active_version: 1, shadow: { version: v2, since: started.since, evaluating: true } });

    // An auditor confined to acme sees acme's decisions only.
    const auditor = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "auditor", role: "auditor", organization: "acme" }).expect(201)).body.secret;
    const report = (await s.http.get("/v1/policies/shadow/report?samples=1").set({ Authorization: `Bearer ${auditor}` }).expect(200)).body;
    expect(report).toMatchObject({ shadow_version: v2, from: started.since, to: null, evaluated: 3, disagreements: 3, allow_to_deny: 2, deny_to_allow: 1, approval_changes: 0 });
    expect(report.by_action).toEqual([expect.objectContaining({ action: "deploy", evaluated: 3, disagreements: 3, samples: [expect.objectContaining({ decision_id: staging.decision_id, shadow_decision: "deny" })] })]);
    expect(report.by_agent.map((g: { agent: { name: string }; disagreements: number }) => [g.agent.name, g.disagreements])).toEqual([["deploy-bot", 2], ["release-bot", 1]]);

    await s.http.delete("/v1/policies/shadow").set(admin()).expect(204);
    const after = await decide("deploy-bot", "staging");
    expect((await record(after.decision_id)).shadow).toBeUndefined();
    expect((await s.http.get("/v1/policies/shadow/report").set(admin()).expect(404)).body.code).toBe("no_shadow");
    const past = (await s.http.get(`/v1/policies/shadow/report?version=${v2}&from=${encodeURIComponent(started.since)}`).set(admin()).expect(200)).body;
    expect(past).toMatchObject({ evaluated: 4, disagreements: 4 });
    expect((await s.http.get(`/v1/policies/shadow/report?version=${v2}`).set(admin()).expect(400)).body.code).toBe("shadow_window_required");

    const events = (await s.http.get("/v1/chron/records?kind=event&limit=1000").set(admin())).body.records.map((r: { type: string }) => r.type);
    expect(events).toEqual(expect.arrayContaining(["policy.shadow_started", "policy.shadow_stopped"]));
    expect((await s.http.get("/v1/chron/verify").set(admin())).body).toMatchObject({ valid: true });
  });

  test("a shadow survives a restart, and ends when its version is activated", async () => {
    await s.http.put("/v1/policies/shadow").set(admin()).send({ version: v2 }).expect(200);
    await s.restart();
    expect((await s.http.get("/v1/policies/status").set(admin())).body.shadow).toMatchObject({ version: v2, evaluating: true });
    const shadowed = await decide("deploy-bot", "staging");
    expect((await record(shadowed.decision_id)).shadow).toMatchObject({ version: v2, agrees: false });
    await s.http.post(`/v1/policies/${v2}/activate`).set(admin()).expect(200);
    expect((await s.http.get("/v1/policies/status").set(admin())).body).toMatchObject({ active_version: v2, shadow: null });
    const now = await decide("deploy-bot", "staging");
    expect(now).toMatchObject({ decision: "deny", reasons: ["staging is frozen for the migration"] });
    expect((await record(now.decision_id)).shadow).toBeUndefined();
  });
});
