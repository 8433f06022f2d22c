import {
  ApprovalExpiredError,
  ApprovalRejectedError,
  ApprovalRequiredError,
  ApprovalTimeoutError,
  Claiim,
  DeniedError,
  type Decision,
} from "@claiim/sdk";
import { databaseKinds } from "../support/databases";
import { startTestServer, type TestServer } from "../support/claiim";
import { decisionRecords, DEPLOY_SKILL, registerDeployBot, type TestAgent } from "../support/agents";
import { FakeIdp } from "../support/fake-idp";
import { startLossyProxy, type LossyProxy } from "../support/lossy-proxy";
import { withoutTests } from "../support/policies";
import { sql } from "../support/sql";
import { until } from "../support/until";

/** Production deploys need Alice's approval; production/short ones too, but it lapses after 2 s. */
const SHORT_TTL_SECONDS = 2;
const deploy = (resource: string, purpose: string) => ({ action: "deploy", resource, purpose, skill: `${DEPLOY_SKILL.name}@${DEPLOY_SKILL.version}` });

type Rec = { decision_id: string; decision: string; reason_codes?: string[]; idempotency_key?: string; approval?: { id: string; status: string } };

/** The TypeScript SDK waiting for a human's approval, against a real CLAIIM, approved as a human or a chat bridge would. */
describe.each(databaseKinds())("the TypeScript SDK waits for a human's approval, CLAIIM on %s", (kind) => {
  let s: TestServer;
  let bot: TestAgent;
  let bridge: string;
  let proxy: LossyProxy;
  const idp = new FakeIdp();
  const admin = () => ({ Authorization: `Bearer ${s.admin}` });
  const client = (url = s.claiim.url) => new Claiim({ url, clientId: bot.clientId, clientSecret: bot.clientSecret, retry: { baseDelayMs: 20, maxDelayMs: 200 } });
  const records = async () => (await decisionRecords(s, bot.agentId)) as Rec[];
  const withApproval = async (id: string) => (await records()).filter((r) => r.approval?.id === id);
  const pendingFor = (purpose: string) =>
    until(`an approval pending for "${purpose}"`, async () => {
      const list = (await s.http.get(`/v1/approvals?agent=${bot.agentId}&status=pending`).set(admin()).expect(200)).body.approvals as { id: string; request: { purpose: string } }[];
      return list.find((a) => a.request.purpose === purpose)?.id;
    });
  const waiting = () => s.claiim.approvals.stats().waiting;
  const answer = (id: string, verdict: "approve" | "reject", reason: string) =>
    s.http.post(`/v1/approvals/${id}/${verdict}`).set({ Authorization: `Bearer ${bridge}` }).send({ reason, on_behalf_of: `alice@${bot.orgSlug}.example` }).expect(200);
  const approvalRow = async (id: string) => (await sql(s.claiim.db, "SELECT status, used_by_decision_id FROM approvals WHERE id = $1", [id]))[0];

  beforeAll(async () => {
    await idp.start();
    s = await startTestServer(kind, { env: idp.env() });
    bot = await registerDeployBot(s);
    bridge = (await s.http.post("/v1/api-keys").set(admin()).send({ name: "chat bridge", role: "approver", organization: bot.orgSlug }).expect(201)).body.secret;
    const files = (await s.http.get("/v1/policies/1").set(admin()).expect(200)).body.files as Record<string, string>;
    const data = JSON.parse(files["claiim/data.json"]);
    data.skills.deploy.requires_approval.unshift({ action: "deploy", resources: ["production/short"], reason: "a short-lived production change needs a human", ttl_seconds: SHORT_TTL_SECONDS });
    await s.http.post("/v1/policies").set(admin()).send({ files: { ...withoutTests(files), "claiim/data.json": JSON.stringify(data) }, message: "short approvals", activate: true }).expect(201);
    proxy = await startLossyProxy(s.claiim.url);
  });
  afterAll(async () => {
    await proxy?.close();
    await s?.stop();
    await idp.stop();
  });

  test("guard waits while Alice approves, then runs once on CLAIIM's allow: one allow recorded, the approval spent", async () => {
    const claiim = client();
    let runs = 0;
    const guarded = claiim.guard(deploy("production", "release 1.4.0"), (d) => (runs++, d), { waitForApproval: { timeoutMs: 30_000 } });
    const id = await pendingFor("release 1.4.0");
    await until("the SDK to long-poll", () => waiting() === 1);
    expect(runs).toBe(0);
    const alice = await idp.sign({ name: "Alice Ops", email: `alice@${bot.orgSlug}.example`, email_verified: true, claiim_org: bot.orgSlug }, { sub: "00u-alice" });
    await s.http.post(`/v1/approvals/${id}/approve`).set({ Authorization: `Bearer ${alice}` }).send({ reason: "CHG-1042 reviewed" }).expect(200);
    const decision = (await guarded) as Decision;
    expect(runs).toBe(1);
    expect(decision).toMatchObject({ decision: "allow", allowed: true, reasons: [{ code: "approval_granted" }], approval: { id, status: "used" } });
    expect(decision.reasons[0].message).toContain(`alice@${bot.orgSlug}.example`);

    const trail = await withApproval(id);
    expect(trail.map((r) => [r.decision, r.reason_codes])).toEqual([
      ["approval_required", ["approval_required"]],
      ["allow", ["approval_granted"]],
    ]);
    expect(trail[1].decision_id).toBe(decision.decisionId);
    // The decision that used the approval is a new decision: a new Idempotency-Key.
    expect(trail[0].idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
    expect(trail[1].idempotency_key).toMatch(/^[0-9a-f-]{36}$/);
    expect(trail[1].idempotency_key).not.toBe(trail[0].idempotency_key);
    expect(await approvalRow(id)).toEqual({ status: "used", used_by_decision_id: decision.decisionId });
    expect(waiting()).toBe(0);
  });

  test("waitForApproval(err) after guard threw ApprovalRequiredError; the same approval again is CLAIIM's recorded deny, never a second allow", async () => {
    const claiim = client();
    const err = (await claiim.guard(deploy("production", "two steps"), () => "ran").catch((e: unknown) => e)) as ApprovalRequiredError;
    expect(err).toBeInstanceOf(ApprovalRequiredError);
    expect(err.approval).toMatchObject({ status: "pending", approvers: { accountable_human: { email: `alice@${bot.orgSlug}.example` } } });
    expect(err.request).toEqual(deploy("production", "two steps"));
    await answer(err.approval.id, "approve", "Alice said yes in chat");
    const allowed = await claiim.waitForApproval(err, { timeoutMs: 10_000 });
    expect(allowed).toMatchObject({ allowed: true, approval: { id: err.approval.id, status: "used" } });
    const again = await claiim.waitForApproval(err, { timeoutMs: 10_000 });
    expect(again).toMatchObject({ decision: "deny", allowed: false, reasons: [{ code: "approval_used" }] });
    const trail = await withApproval(err.approval.id);
    expect(trail.map((r) => r.decision)).toEqual(["approval_required", "allow", "deny"]);
    // decide() with waitForApproval returns the decision; an approval already approved is used at once.
    const asked = await claiim.decide(deploy("production", "decide and wait"));
    await answer(asked.approval!.id, "approve", "ok");
    expect(await claiim.decide(deploy("production", "decide and wait"), { waitForApproval: { timeoutMs: 10_000 } })).toMatchObject({ allowed: true, approval: { id: asked.approval!.id } });
  });

  test("rejected: ApprovalRejectedError with the approval and the approver's reason; nothing runs and nothing more is asked", async () => {
    const claiim = client();
    let ran = false;
    const guarded = claiim.guard(deploy("production", "freeze"), () => (ran = true), { waitForApproval: { timeoutMs: 30_000 } }).catch((e: unknown) => e);
    const id = await pendingFor("freeze");
    await until("the SDK to long-poll", () => waiting() === 1);
    await answer(id, "reject", "not during the freeze");
    const err = (await guarded) as ApprovalRejectedError;
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(ApprovalRejectedError);
    expect(err).toBeInstanceOf(DeniedError);
    expect(err).toMatchObject({ code: "approval_rejected", approval: { id, status: "rejected", decision_reason: "not during the freeze" } });
    expect(err.reasons).toEqual([{ code: "approval_rejected", message: expect.stringContaining("not during the freeze") }]);
    expect(err.decision.decision).toBe("approval_required");
    expect((await withApproval(id)).map((r) => r.decision)).toEqual(["approval_required"]);
  });

  test("expired: ApprovalExpiredError once CLAIIM expires the approval nobody answered", async () => {
    const claiim = client();
    const started = Date.now();
    const err = (await claiim.guard(deploy("production/short", "nobody answers"), () => "ran", { waitForApproval: { timeoutMs: 30_000 } }).catch((e: unknown) => e)) as ApprovalExpiredError;
    expect(err).toBeInstanceOf(ApprovalExpiredError);
    expect(err).toMatchObject({ code: "approval_expired", reasons: [{ code: "approval_expired" }], approval: { status: "expired" } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(SHORT_TTL_SECONDS * 1000 - 100);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect((await approvalRow(err.approval.id)).status).toBe("expired");
    expect((await withApproval(err.approval.id)).map((r) => r.decision)).toEqual(["approval_required"]);
  });

  test("timeout: ApprovalTimeoutError on time with the approval still pending; the poll is released, and waiting again later works", async () => {
    const claiim = client();
    const started = Date.now();
    const err = (await claiim.guard(deploy("production", "slow human"), () => "ran", { waitForApproval: { timeoutMs: 1500 } }).catch((e: unknown) => e)) as ApprovalTimeoutError;
    const took = Date.now() - started;
    expect(err).toBeInstanceOf(ApprovalTimeoutError);
    expect(err).toMatchObject({ code: "approval_pending", reasons: [{ code: "approval_pending" }], approval: { status: "pending" } });
    // The deadline ends the poll in flight (asked to wait 2 s), not the next whole second.
    expect(took).toBeGreaterThanOrEqual(1400);
    expect(took).toBeLessThan(1950);
    expect((await s.http.get(`/v1/approvals/${err.approval.id}`).set(admin()).expect(200)).body.status).toBe("pending");
    await until("CLAIIM to release the abandoned poll", () => waiting() === 0);
    await answer(err.approval.id, "approve", "sorry, I was out");
    expect(await claiim.waitForApproval(err, { timeoutMs: 10_000 })).toMatchObject({ allowed: true, approval: { id: err.approval.id, status: "used" } });
  });

  test("cancellation: aborting ends the wait at once, CLAIIM releases the poll, the approval stays unused for a later call", async () => {
    const claiim = client();
    const controller = new AbortController();
    let ran = false;
    const guarded = claiim.guard(deploy("production", "cancelled"), () => (ran = true), { waitForApproval: { timeoutMs: 30_000 }, signal: controller.signal }).catch((e: unknown) => e);
    const id = await pendingFor("cancelled");
    await until("the SDK to long-poll", () => waiting() === 1);
    const abortedAt = Date.now();
    controller.abort();
    const err = (await guarded) as Error;
    expect(Date.now() - abortedAt).toBeLessThan(500);
    expect(err.name).toBe("AbortError");
    expect(ran).toBe(false);
    await until("CLAIIM to release the aborted poll", () => waiting() === 0);
    await answer(id, "approve", "approved after the agent gave up");
    expect(await approvalRow(id)).toEqual({ status: "approved", used_by_decision_id: null });
    expect((await withApproval(id)).map((r) => r.decision)).toEqual(["approval_required"]);
    // A signal aborted before the call asks nothing at all.
    const before = (await records()).length;
    await expect(claiim.guard(deploy("production", "cancelled"), () => (ran = true), { waitForApproval: {}, signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    expect((await records()).length).toBe(before);
    // Asked again later, CLAIIM answers with the approved approval, and waiting uses it at once.
    expect(await claiim.decide(deploy("production", "cancelled"), { waitForApproval: { timeoutMs: 5000 } })).toMatchObject({ allowed: true, approval: { id } });
    expect(ran).toBe(false);
  });

  test("a lost answer of the decision that uses the approval is retried under its own key: one allow, no approval_used deny", async () => {
    const claiim = client(proxy.url);
    const asked = await claiim.decide(deploy("production", "lossy"));
    expect(asked.decision).toBe("approval_required");
    await answer(asked.approval!.id, "approve", "go");
    const seen = proxy.decisionKeys.length;
    proxy.loseNext(1, "reset");
    const allowed = await claiim.waitForApproval(asked, { timeoutMs: 10_000 });
    expect(allowed).toMatchObject({ allowed: true, replayed: true });
    const keys = proxy.decisionKeys.slice(seen);
    expect(keys).toHaveLength(2);
    expect(keys[0]).toBe(keys[1]);
    expect(keys[0]).not.toBe(proxy.decisionKeys[seen - 1]);
    expect((await withApproval(asked.approval!.id)).map((r) => r.decision)).toEqual(["approval_required", "allow"]);
  });

  test("two calls waiting for the same request share one approval: exactly one allow, the other is CLAIIM's approval_used deny", async () => {
    const claiim = client();
    let runs = 0;
    const both = [0, 1].map(() => claiim.guard(deploy("production", "twice at once"), () => ++runs, { waitForApproval: { timeoutMs: 30_000 } }).then((v) => v, (e: unknown) => e));
    const id = await pendingFor("twice at once");
    await until("both to long-poll", () => waiting() === 2);
    await answer(id, "approve", "once");
    const outcomes = await Promise.all(both);
    expect(runs).toBe(1);
    const denied = outcomes.find((o) => o instanceof DeniedError) as DeniedError;
    expect(denied).toBeInstanceOf(DeniedError);
    expect(denied).not.toBeInstanceOf(ApprovalRequiredError);
    expect(denied.reasons).toEqual([expect.objectContaining({ code: "approval_used" })]);
    const trail = await withApproval(id);
    expect(trail.filter((r) => r.decision === "allow")).toHaveLength(1);
    expect(trail.filter((r) => r.decision === "approval_required")).toHaveLength(2);
  });
});
