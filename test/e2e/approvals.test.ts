import { createHmac, randomBytes } from "node:crypto";
import request from "supertest";
import { Webhook } from "standardwebhooks";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { FakeIdp } from "../support/fake-idp";
import { withoutTests } from "../support/policies";
import { spawnReplica } from "../support/replicas";
import { sql } from "../support/sql";
import { until } from "../support/until";
import { WebhookReceiver } from "../support/webhook-receiver";

const SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const production = (purpose: string) => ({ action: "deploy", resource: "production", purpose, skill: { name: "deploy", version: "1.2.0" } });
const sendReply = (purpose: string) => ({ action: "send_response", resource: "ticket/7", purpose, skill: { name: "customer-support", version: "2.0.0" } });

type Rec = { seq: number; kind: string; type?: string; decision?: string; reason_codes?: string[]; subject?: { id: string }; approval?: Record<string, unknown>; actor?: Record<string, unknown>; after?: Record<string, unknown>; decision_id?: string };

describe.each(databaseKinds())("human approval on %s", (kind) => {
  let s: TestServer;
  const idp = new FakeIdp();
  const receiver = new WebhookReceiver();
  const ids = {} as Record<"acme" | "alice" | "bob" | "deploy" | "support", string>;
  const tokens = {} as Record<"deploy" | "support" | "bridge" | "globexBridge" | "auditor", string>;
  const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
  const admin = () => bearer(s.admin);
  const decide = async (body: object, t = tokens.deploy) => (await s.http.post("/v1/decisions").set(bearer(t)).send(body).expect(200)).body;
  const human = (email: string, over: { org?: string; roles?: string[]; sub?: string } = {}) =>
    idp.sign({ name: email, email, email_verified: true, claiim_org: over.org ?? "acme", claiim_roles: over.roles ?? [] }, { sub: over.sub ?? `00u-${email.split("@")[0]}` });
  const records = async (query: string): Promise<Rec[]> => (await s.http.get(`/v1/chron/records?limit=1000&${query}`).set(admin()).expect(200)).body.records;
  const eventsOf = async (approvalId: string) => (await records("kind=event")).filter((r) => r.subject?.id === approvalId);
  const approval = async (id: string) => (await s.http.get(`/v1/approvals/${id}`).set(admin()).expect(200)).body;

  beforeAll(async () => {
    await idp.start();
    await receiver.start();
    s = await startTestServer(kind, {
      env: {
        ...idp.env(),
        CLAIIM_APPROVAL_WEBHOOK_URL: receiver.url,
        CLAIIM_APPROVAL_WEBHOOK_SECRET: SECRET,
        CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS: "0.2,0.2",
        CLAIIM_APPROVAL_WEBHOOK_TIMEOUT_SECONDS: "1",
        // No tree head signed by the clock: a long-poll is checked to hold no database connection,
        // and a head signed in that instant would hold one for its own insert.
        CLAIIM_CHECKPOINT_EVERY_SECONDS: "3600",
      },
    });
    ids.acme = (await s.http.post("/v1/organizations").set(admin()).send({ slug: "acme", name: "Acme" }).expect(201)).body.id;
    await s.http.post("/v1/organizations").set(admin()).send({ slug: "globex", name: "Globex" }).expect(201);
    ids.alice = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Alice Ops", email: "alice@acme.example" }).expect(201)).body.id;
    ids.bob = (await s.http.post("/v1/humans").set(admin()).send({ organization: "acme", name: "Bob", email: "bob@acme.example" }).expect(201)).body.id;
    await s.http.post("/v1/humans").set(admin()).send({ organization: "globex", name: "Gina", email: "gina@globex.example" }).expect(201);
    for (const [name, skill, version, key] of [["deploy-bot", "deploy", "1.2.0", "deploy"], ["support-bot", "customer-support", "2.0.0", "support"]] as const) {
      ids[key] = (await s.http.post("/v1/agents").set(admin()).send({ organization: "acme", name, owner: "alice@acme.example", skills: [{ name: skill, version }] }).expect(201)).body.id;
      tokens[key] = (await s.http.post(`/v1/agents/${ids[key]}/credentials`).set(admin()).send({}).expect(201)).body.token;
    }
    const key = async (role: string, organization: string) => (await s.http.post("/v1/api-keys").set(admin()).send({ name: `${organization} ${role}`, role, organization }).expect(201)).body.secret;
    tokens.bridge = await key("approver", "acme");
    tokens.globexBridge = await key("approver", "globex");
    tokens.auditor = await key("auditor", "acme");
    // Customer responses wait one second for a human, so that expiry can be watched.
    const files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files as Record<string, string>;
    const data = JSON.parse(files["claiim/data.json"]);
    data.skills["customer-support"].requires_approval[0].ttl_seconds = 1;
    await s.http.post("/v1/policies").set(admin()).send({ files: { ...withoutTests(files), "claiim/data.json": JSON.stringify(data) }, message: "short approvals for replies", activate: true }).expect(201);
  });
  afterAll(async () => {
    await s?.stop();
    await receiver.stop();
    await idp.stop();
  });

  test("approval required → approved by the accountable human → allowed once → second use denied; each step is in Chron, by agent and by owner", async () => {
    const asked = await decide(production("release 1.4.0"));
    expect(asked).toMatchObject({
      decision: "approval_required",
      allow: false,
      reasons: ["deploying to production requires a change approved by a human"],
      reason_codes: ["approval_required"],
      approval: { status: "pending", approvers: { accountable_human: { id: ids.alice, email: "alice@acme.example" }, roles: [], humans: [] } },
    });
    const id = asked.approval.id;
    const alice = await human("alice@acme.example");
    const inbox = (await s.http.get("/v1/approvals?approver=me&status=pending").set(bearer(alice)).expect(200)).body.approvals;
    expect(inbox.map((a: { id: string }) => a.id)).toContain(id);
    const approved = (await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(alice)).send({ reason: "CHG-1042 reviewed" }).expect(200)).body;
    expect(approved).toMatchObject({ status: "approved", decided_by: { type: "human", id: "https://idp.acme.example#00u-alice", human: { id: ids.alice } }, decision_reason: "CHG-1042 reviewed" });

    const allowed = await decide({ ...production("release 1.4.0"), approval_id: id });
    expect(allowed).toMatchObject({ decision: "allow", allow: true, reason_codes: ["approval_granted"], approval: { id, status: "used", approved_by: { type: "human", human: { email: "alice@acme.example" } } } });
    const second = await decide({ ...production("release 1.4.0"), approval_id: id });
    expect(second).toMatchObject({ decision: "deny", allow: false, reason_codes: ["approval_used"], approval: { id, status: "used" } });
    const [row] = await sql(s.claiim.db, "SELECT status, used_by_decision_id FROM approvals WHERE id = $1", [id]);
    expect(row).toEqual({ status: "used", used_by_decision_id: allowed.decision_id });

    // Every step, in order, linking the decisions, the approval and who approved it.
    const mine = (r: Rec) => r.subject?.id === id || r.decision_id === asked.decision_id || r.decision_id === allowed.decision_id || r.decision_id === second.decision_id;
    const steps = (await records(`agent=${ids.deploy}`)).filter(mine).filter((r) => !r.type?.startsWith("approval.webhook"));
    expect(steps.map((r) => r.type ?? `decision ${r.decision}`)).toEqual(["decision approval_required", "approval.requested", "approval.approved", "decision allow", "approval.used", "decision deny"]);
    expect(steps[0].approval).toMatchObject({ id, status: "pending", approvers: { accountable_human: true } });
    expect(steps[2]).toMatchObject({ actor: { type: "human", id: "https://idp.acme.example#00u-alice" }, after: { decision_id: asked.decision_id, status: "approved" } });
    expect(steps[3]).toMatchObject({ approval: { id, status: "used", requested_decision_id: asked.decision_id, approved_by: { human: { id: ids.alice } } } });
    expect(steps[4]).toMatchObject({ after: { used_by_decision_id: allowed.decision_id } });
    expect(steps[5].reason_codes).toEqual(["approval_used"]);
    const byOwner = (await records(`owner=${ids.alice}&kind=event`)).filter((r) => r.subject?.id === id).map((r) => r.type);
    expect(byOwner).toEqual(expect.arrayContaining(["approval.requested", "approval.approved", "approval.used"]));
    expect((await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body).toMatchObject({ valid: true });
  });

  test("a long-poll returns as soon as the human approves, holding no database connection while it waits", async () => {
    const asked = await decide(production("long-poll"));
    const url = `/v1/approvals/${asked.approval.id}`;
    const started = Date.now();
    const polls = Array.from({ length: 8 }, () => s.http.get(`${url}?wait=30`).set(bearer(tokens.deploy)).then((r) => r));
    await until("the polls to wait", async () => s.claiim.approvals.stats().waiting === 8);
    if (s.claiim.db.kind === "postgresql") {
      const pool = s.claiim.db.pool;
      expect(pool.totalCount - pool.idleCount).toBe(0);
      expect(pool.waitingCount).toBe(0);
    }
    await s.http.post(`${url}/approve`).set(bearer(tokens.bridge)).send({ reason: "Alice said yes in chat", on_behalf_of: "alice@acme.example" }).expect(200);
    const answers = await Promise.all(polls);
    expect(answers.map((r) => [r.status, r.body.status])).toEqual(Array(8).fill([200, "approved"]));
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(answers[0].body.decided_by).toMatchObject({ type: "api_key", human: { email: "alice@acme.example" } });
  });

  test("rejected: the poll ends, and the approval allows nothing", async () => {
    const asked = await decide(production("rejected change"));
    const id = asked.approval.id;
    const poll = s.http.get(`/v1/approvals/${id}?wait=30`).set(bearer(tokens.deploy)).then((r) => r);
    await until("the poll to wait", async () => s.claiim.approvals.stats().waiting === 1);
    const alice = await human("alice@acme.example");
    await s.http.post(`/v1/approvals/${id}/reject`).set(bearer(alice)).send({ reason: "not during the freeze" }).expect(200);
    expect((await poll).body).toMatchObject({ status: "rejected", decision_reason: "not during the freeze" });
    const denied = await decide({ ...production("rejected change"), approval_id: id });
    expect(denied).toMatchObject({ decision: "deny", reason_codes: ["approval_rejected"], reasons: [expect.stringContaining("not during the freeze")] });
    expect((await eventsOf(id)).map((e) => e.type)).toContain("approval.rejected");
    expect((await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(alice)).send({ reason: "changed my mind" }).expect(409)).body).toMatchObject({ code: "approval_closed", approval_status: "rejected" });
  });

  test("expired: CLAIIM records the expiry itself, with nobody polling; the approval then allows nothing", async () => {
    const asked = await decide(sendReply("refund for ticket 7"), tokens.support);
    expect(asked).toMatchObject({ decision: "approval_required", reasons: ["a customer response must be reviewed by a human before it is sent"] });
    const id = asked.approval.id;
    expect(Date.parse(asked.approval.expires_at) - Date.parse(asked.timestamp)).toBe(1000);
    const expired = await until("the expiry record", async () => (await eventsOf(id)).find((e) => e.type === "approval.expired"));
    expect(expired).toMatchObject({ actor: { type: "system" }, after: { status: "expired" } });
    expect((await approval(id)).status).toBe("expired");
    expect(await decide({ ...sendReply("refund for ticket 7"), approval_id: id }, tokens.support)).toMatchObject({ decision: "deny", reason_codes: ["approval_expired"] });
    const alice = await human("alice@acme.example");
    expect((await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(alice)).send({ reason: "late" }).expect(409)).body.code).toBe("approval_closed");
  });

  test("an approval that expires while CLAIIM is down is expired, and recorded, at the next start; an approved one survives the restart", async () => {
    const lapsing = (await decide(sendReply("lapses while down"), tokens.support)).approval.id;
    const kept = (await decide(production("survives a restart"))).approval.id;
    await s.http.post(`/v1/approvals/${kept}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
    await s.restart(1200);
    await until("the expiry after restart", async () => (await eventsOf(lapsing)).some((e) => e.type === "approval.expired"));
    expect((await decide({ ...production("survives a restart"), approval_id: kept })).decision).toBe("allow");
  });

  test("a mismatched request is a recorded deny naming what differs; the exact one is then allowed", async () => {
    const asked = await decide(production("mismatch"));
    const id = asked.approval.id;
    await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
    const other = await decide({ ...production("mismatch"), resource: "production/billing", approval_id: id });
    expect(other).toMatchObject({ decision: "deny", reason_codes: ["approval_mismatch"], reasons: [expect.stringContaining("resource differ")] });
    const repurposed = await decide({ ...production("something else"), approval_id: id });
    expect(repurposed).toMatchObject({ decision: "deny", reason_codes: ["approval_mismatch"] });
    const [rec] = (await records(`agent=${ids.deploy}&decision=deny`)).filter((r) => r.decision_id === other.decision_id);
    expect(rec).toMatchObject({ policy_decision: "approval_required", reason_codes: ["approval_mismatch"], approval: { id, status: "approved" } });
    expect((await decide({ ...production("mismatch"), approval_id: id })).decision).toBe("allow");
  });

  test("an approval edited by hand in the database is believed over memory: no allow leaves", async () => {
    const asked = await decide(production("edited by hand"));
    const id = asked.approval.id;
    await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
    await sql(s.claiim.db, "UPDATE approvals SET status = 'rejected' WHERE id = $1", [id]);
    const res = await decide({ ...production("edited by hand"), approval_id: id });
    expect(res).toMatchObject({ decision: "deny", reason_codes: ["approval_rejected"] });
    expect((await records(`agent=${ids.deploy}&decision=allow`)).filter((r) => (r.approval as { id?: string } | undefined)?.id === id)).toEqual([]);
    expect((await approval(id)).status).toBe("rejected");
  });

  test("self-approval and approval from outside the organisation are refused", async () => {
    // Alice asked the agent herself: the request is made for her, so she cannot approve it.
    const asked = await decide({ ...production("for alice"), on_behalf_of: { subject: "alice@acme.example" } });
    const url = `/v1/approvals/${asked.approval.id}`;
    const alice = await human("alice@acme.example");
    expect((await s.http.post(`${url}/approve`).set(bearer(alice)).send({ reason: "mine" }).expect(403)).body.code).toBe("approval_self");
    expect((await s.http.post(`${url}/approve`).set(bearer(tokens.bridge)).send({ reason: "mine", on_behalf_of: "alice@acme.example" }).expect(403)).body.code).toBe("approval_self");
    expect((await s.http.post(`${url}/approve`).set(bearer(tokens.deploy)).send({ reason: "me" }).expect(403)).body.code).toBe("agent_not_allowed");
    // Outside the organisation, the approval does not exist.
    expect((await s.http.post(`${url}/approve`).set(bearer(tokens.globexBridge)).send({ reason: "x", on_behalf_of: "gina@globex.example" }).expect(404)).body.code).toBe("approval_not_found");
    const gina = await human("gina@globex.example", { org: "globex", roles: ["approver"] });
    await s.http.post(`${url}/approve`).set(bearer(gina)).send({ reason: "x" }).expect(404);
    await s.http.get(url).set(bearer(gina)).expect(404);
    // Inside it, only those the policy names: not Bob, nor an approver who spans every organisation.
    const bob = await human("bob@acme.example");
    expect((await s.http.post(`${url}/approve`).set(bearer(bob)).send({ reason: "x" }).expect(403)).body.code).toBe("approver_not_allowed");
    await s.http.get(url).set(bearer(bob)).expect(404);
    const everywhere = await human("bob@acme.example", { org: "*", roles: ["approver"] });
    expect((await s.http.post(`${url}/approve`).set(bearer(everywhere)).send({ reason: "x" }).expect(403)).body.code).toBe("approver_not_allowed");
    expect((await eventsOf(asked.approval.id)).map((e) => e.type).filter((t) => t !== "approval.webhook_delivered")).toEqual(["approval.requested"]);
    expect((await approval(asked.approval.id)).status).toBe("pending");
  });

  test("the webhook reaches a real receiver, signed as Standard Webhooks specify, and is retried after a failure", async () => {
    receiver.received = [];
    receiver.plan = [500];
    const asked = await decide(production("webhook"));
    const id = asked.approval.id;
    const [failed, delivered] = await receiver.count(2);
    expect([failed.answered, delivered.answered]).toEqual([500, 204]);
    const verifier = new Webhook(SECRET);
    for (const r of [failed, delivered]) {
      const headers = { "webhook-id": String(r.headers["webhook-id"]), "webhook-timestamp": String(r.headers["webhook-timestamp"]), "webhook-signature": String(r.headers["webhook-signature"]) };
      expect(headers["webhook-id"]).toBe(`msg_${id}`);
      // The reference library accepts it, and so does the HMAC computed by hand from the spec.
      expect(verifier.verify(r.body, headers)).toMatchObject({ type: "approval.requested" });
      const key = Buffer.from(SECRET.slice("whsec_".length), "base64");
      const mac = createHmac("sha256", key).update(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${r.body}`).digest("base64");
      expect(headers["webhook-signature"]).toBe(`v1,${mac}`);
      expect(() => verifier.verify(r.body.replace("production", "staging"), headers)).toThrow();
    }
    expect(delivered.body).toBe(failed.body);
    expect(JSON.parse(delivered.body)).toMatchObject({
      type: "approval.requested",
      data: {
        approval: { id, status: "pending", approve_url: expect.stringMatching(new RegExp(`/v1/approvals/${id}/approve$`)), reject_url: expect.stringMatching(/\/reject$/) },
        decision_id: asked.decision_id,
        reasons: ["deploying to production requires a change approved by a human"],
        organization: { slug: "acme" },
        agent: { id: ids.deploy, name: "deploy-bot" },
        accountable_human: { id: ids.alice, email: "alice@acme.example" },
        request: { ...production("webhook"), on_behalf_of: null },
      },
    });
    const state = await until("the delivery state", async () => {
      const a = await approval(id);
      return a.webhook.state === "delivered" && a;
    });
    expect(state.webhook).toMatchObject({ attempts: 2, last_error: null, delivered_at: expect.any(String) });
    const events = (await eventsOf(id)).filter((e) => e.type?.startsWith("approval.webhook"));
    expect(events.map((e) => [e.type, e.after?.attempt, e.after?.status_code])).toEqual([
      ["approval.webhook_failed", 1, 500],
      ["approval.webhook_delivered", 2, 204],
    ]);
    expect(events[0].after).toMatchObject({ final: false, error: "the receiver answered HTTP 500" });
    expect(JSON.stringify(await records("kind=event"))).not.toContain(SECRET.slice(6));
  });

  test("a receiver that never answers holds up no decision; after the last retry the failure is visible in the approval", async () => {
    receiver.received = [];
    receiver.plan = ["hang", "hang", "hang"];
    const asked = await decide(production("unreachable bridge"));
    await until("the receiver to hold the first attempt", async () => receiver.holding > 0);
    // While the receiver holds the notification, decisions go on.
    expect((await decide({ action: "deploy", resource: "staging", purpose: "meanwhile", skill: { name: "deploy", version: "1.2.0" } })).decision).toBe("allow");
    const failed = await until("the delivery to fail", async () => {
      const a = await approval(asked.approval.id);
      return a.webhook.state === "failed" && a;
    });
    expect(failed.webhook).toMatchObject({ attempts: 3, last_error: "no answer before the timeout", next_attempt_at: null });
    const last = (await eventsOf(asked.approval.id)).filter((e) => e.type === "approval.webhook_failed").pop();
    expect(last?.after).toMatchObject({ attempt: 3, final: true });
  });

  test("the summary counts approvals", async () => {
    const res = (await s.http.get("/v1/chron/summary?from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&organization=acme").set(bearer(tokens.auditor)).expect(200)).body;
    const events = await records("kind=event");
    const count = (t: string) => events.filter((e) => e.type === t).length;
    expect(res.totals.approvals).toEqual({
      requested: count("approval.requested"),
      approved: count("approval.approved"),
      rejected: count("approval.rejected"),
      expired: count("approval.expired"),
      used: count("approval.used"),
    });
    expect(res.totals.approvals).toMatchObject({ rejected: 1, used: 3 });
    expect(res.totals.approval_required).toBeGreaterThan(0);
  });

  test("a second CLAIIM process on the same database: two concurrent uses of one approval, exactly one allow", async () => {
    const asked = await decide(production("two processes"));
    const id = asked.approval.id;
    await s.http.post(`/v1/approvals/${id}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
    const other = await startSecondProcess(s);
    try {
      const body = { ...production("two processes"), approval_id: id };
      const results = await Promise.all(
        [s.http, other.http, s.http, other.http].map((http) => http.post("/v1/decisions").set(bearer(tokens.deploy)).send(body).then((r) => r)),
      );
      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(results.filter((r) => r.body.allow)).toHaveLength(1);
      expect(results.filter((r) => !r.body.allow).map((r) => r.body.reason_codes)).toEqual(Array(3).fill(["approval_used"]));
      const recorded = (await records(`agent=${ids.deploy}&kind=decision`)).filter((r) => results.some((x) => x.body.decision_id === r.decision_id));
      expect(recorded.map((r) => r.decision).sort()).toEqual(["allow", "deny", "deny", "deny"]);
      expect((await eventsOf(id)).filter((e) => e.type === "approval.used")).toHaveLength(1);
    } finally {
      await other.stop();
    }
    expect((await s.http.get("/v1/chron/verify").set(admin()).expect(200)).body).toMatchObject({ valid: true });
  });

  test("the same request asked at once through two processes, neither following the other yet, opens one approval", async () => {
    const other = await startSecondProcess(s, { CLAIIM_SYNC_POLL_MS: "60000", CLAIIM_SYNC_MAX_LAG_MS: "600000" });
    try {
      const body = production("asked twice at once");
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? other.http : s.http).post("/v1/decisions").set(bearer(tokens.deploy)).send(body).then((r) => r)));
      expect(answers.map((r) => r.status)).toEqual(Array(8).fill(200));
      expect(answers.map((r) => r.body.decision)).toEqual(Array(8).fill("approval_required"));
      const ids = new Set(answers.map((r) => r.body.approval.id));
      expect(ids.size).toBe(1);
      const [id] = [...ids];
      expect((await eventsOf(id)).map((e) => e.type).filter((t) => !t?.startsWith("approval.webhook"))).toEqual(["approval.requested"]);
      const [{ n }] = await sql(s.claiim.db, "SELECT COUNT(*) AS n FROM approvals WHERE request = (SELECT request FROM approvals WHERE id = $1)", [id]);
      expect(Number(n)).toBe(1);
    } finally {
      await other.stop();
    }
  });

  test("asked through one process, answered and used through another before it follows the change: no \"not found\", no \"pending\"", async () => {
    // A follower that polls once a minute (and tolerates it): only reading the approval again, as
    // answering and using it do, can know of it in time.
    const other = await startSecondProcess(s, { CLAIIM_SYNC_POLL_MS: "60000", CLAIIM_SYNC_MAX_LAG_MS: "600000" });
    try {
      const asked = await decide(production("asked here, answered there"));
      const id = asked.approval.id;
      await other.http.post(`/v1/approvals/${id}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
      // The agent's next request lands on the first process, which has not followed the answer either.
      const asked2 = await decide(production("answered here, used there"));
      await s.http.post(`/v1/approvals/${asked2.approval.id}/approve`).set(bearer(tokens.bridge)).send({ reason: "ok", on_behalf_of: "alice@acme.example" }).expect(200);
      const used = (await other.http.post("/v1/decisions").set(bearer(tokens.deploy)).send({ ...production("answered here, used there"), approval_id: asked2.approval.id }).expect(200)).body;
      expect([used.decision, used.reason_codes]).toEqual(["allow", ["approval_granted"]]);
      const usedHere = await decide({ ...production("asked here, answered there"), approval_id: id });
      expect([usedHere.decision, usedHere.reason_codes]).toEqual(["allow", ["approval_granted"]]);
      expect((await eventsOf(id)).map((e) => e.type).filter((t) => !t?.startsWith("approval.webhook"))).toEqual(["approval.requested", "approval.approved", "approval.used"]);
    } finally {
      await other.stop();
    }
  });
});

/** Another CLAIIM process on the test server's database, as a second replica would run (it loads approvals at start). */
async function startSecondProcess(s: TestServer, env: Record<string, string> = {}): Promise<{ http: ReturnType<typeof request>; stop(): Promise<void> }> {
  const replica = await spawnReplica(s, env);
  return { http: request(replica.base), stop: () => replica.stop() };
}
