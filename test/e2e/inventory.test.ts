import { parse } from "csv-parse/sync";
import { databaseKinds } from "../support/databases";
import { withoutTests } from "../support/policies";
import { startTestServer, type TestServer } from "../support/claiim";
import { sql } from "../support/sql";

describe.each(databaseKinds())("inventory and effective permissions on %s", (kind) => {
  let s: TestServer;
  let alice: string;
  let bob: string;
  const ids: Record<string, string> = {};
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });

  beforeAll(async () => {
    s = await startTestServer(kind);
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201);
    alice = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice", email: "alice@acme.example" }).expect(201)).body.id;
    bob = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Bob, Jr.", email: "bob@acme.example" }).expect(201)).body.id;
    const agents = [
      { name: "deploy-bot", owner: alice, skills: [{ name: "deploy", version: "1.2.0" }] },
      { name: "support-bot", owner: bob, skills: [{ name: "customer-support", version: "2.0.0" }] },
      { name: "review-bot", owner: bob, skills: [{ name: "code-review", version: "1.0.0" }, { name: "deploy", version: "1.0.0" }] },
    ];
    for (const a of agents) ids[a.name] = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", ...a }).expect(201)).body.id;
    await s.http.post(`/v1/agents/${ids["deploy-bot"]}/credentials`).set(admin()).send({}).expect(201);
    await s.http.post(`/v1/agents/${ids["support-bot"]}/suspend`).set(admin()).send({ reason: "review" }).expect(200);
  });
  afterAll(async () => {
    await s?.stop();
  });

  test("JSON inventory answers which agents run and who owns them, with filters", async () => {
    const all = (await s.http.get("/v1/inventory/agents").set(admin()).expect(200)).body;
    expect(all.count).toBe(3);
    expect(all.agents.find((a: { agent_name: string }) => a.agent_name === "deploy-bot")).toMatchObject({
      organization: "acme",
      status: "active",
      owner_id: alice,
      owner_email: "alice@acme.example",
      owner_status: "active",
      skills: "deploy@1.2.0",
      active_credentials: 1,
    });
    const names = async (q: string) => ((await s.http.get(`/v1/inventory/agents?${q}`).set(admin()).expect(200)).body.agents as { agent_name: string }[]).map((a) => a.agent_name).sort();
    expect(await names(`owner=${bob}`)).toEqual(["review-bot", "support-bot"]);
    expect(await names("status=suspended")).toEqual(["support-bot"]);
    expect(await names("skill=deploy")).toEqual(["deploy-bot", "review-bot"]);
    expect(await names("organization=acme&skill=code-review&status=active")).toEqual(["review-bot"]);
    expect((await s.http.get("/v1/inventory/agents?format=xml").set(admin()).expect(400)).body.errors[0].path).toBe("format");
  });

  test("CSV inventory has the same rows, quoted where needed", async () => {
    const res = await s.http.get("/v1/inventory/agents?format=csv").set(admin()).expect(200);
    expect(res.headers["content-type"]).toMatch(/^text\/csv/);
    const rows = parse(res.text, { columns: true }) as Record<string, string>[];
    expect(rows).toHaveLength(3);
    expect(rows.find((r) => r.agent_name === "support-bot")).toMatchObject({ owner_name: "Bob, Jr.", status: "suspended", status_reason: "review", skills: "customer-support@2.0.0" });
  });

  test("effective permissions are computed from the active policy, and decide nothing", async () => {
    const before = (await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n;
    const report = (await s.http.get(`/v1/agents/${ids["deploy-bot"]}/permissions`).set(admin()).expect(200)).body;
    expect(report.policy).toMatchObject({ version: 1 });
    const cell = (action: string, resource: string) => report.matrix.find((c: { action: string; resource: string }) => c.action === action && c.resource === resource);
    expect(cell("deploy", "staging")).toMatchObject({ skill: "deploy", version: "1.2.0", allow: true });
    expect(cell("deploy", "staging/*")).toMatchObject({ allow: true });
    expect(cell("deploy", "production")).toMatchObject({
      allow: false,
      decision: "approval_required",
      reasons: ["deploying to production requires a change approved by a human"],
      reason_codes: ["approval_required"],
    });
    expect(report.matrix).toHaveLength(4);
    expect((await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM chron_records"))[0].n).toBe(before);

    const review = (await s.http.get(`/v1/agents/${ids["review-bot"]}/permissions`).set(admin()).expect(200)).body;
    expect(new Set(review.matrix.map((c: { skill: string }) => c.skill))).toEqual(new Set(["code-review", "deploy"]));
    expect(review.matrix.find((c: { action: string }) => c.action === "merge_pull_request")).toMatchObject({ allow: false, reasons: ["merging requires approval by a human reviewer"] });

    const suspended = (await s.http.get(`/v1/agents/${ids["support-bot"]}/permissions`).set(admin()).expect(200)).body;
    expect(suspended.matrix.length).toBeGreaterThan(0);
    expect(suspended.matrix.every((c: { allow: boolean; reasons: string[] }) => !c.allow && c.reasons.includes('agent "support-bot" is suspended, not active'))).toBe(true);
  });

  test("a new active policy changes the matrix without anyone editing it", async () => {
    const files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files as Record<string, string>;
    const data = JSON.parse(files["claiim/data.json"]);
    data.skills.deploy.requires_approval = [];
    data.skills.deploy.permits.push({ action: "deploy", resources: ["production"] });
    await s.http.post("/v1/policies").set(admin()).send({ files: { ...withoutTests(files), "claiim/data.json": JSON.stringify(data) }, message: "production ok", activate: true }).expect(201);
    const report = (await s.http.get(`/v1/agents/${ids["deploy-bot"]}/permissions`).set(admin()).expect(200)).body;
    expect(report.policy.version).toBe(2);
    expect(report.matrix.find((c: { resource: string }) => c.resource === "production")).toMatchObject({ allow: true });
  });
});
