import type { RegoValue } from "../../src/policy/runtime/value";
import { ApprovalService } from "../../src/approvals/approval-service";
import { checkApprover } from "../../src/approvals/approvers";
import type { Directory } from "../../src/approvals/views";
import type { DecisionContent, EventContent } from "../../src/chron/record";
import { DecisionService } from "../../src/decisions/decision-service";
import type { Agent, Human, Organization } from "../../src/identity/model";
import { createLogger } from "../../src/lib/logger";
import type { ActivePolicy } from "../../src/policy/policy-engine";
import { FakeApprovalStore } from "../support/fakes/approval-store";
import { fakeChron } from "../support/recorder";
import type { Principal } from "../../src/shared/principal";
import type { DecisionRequest } from "../../src/decisions/model";
import type { ApprovalSettings } from "../../src/approvals/config";

const now = new Date();
const org = (id: string, slug: string): Organization => ({ id, slug, name: slug, createdAt: now });
const human = (id: string, orgId: string, email: string, status: Human["status"] = "active"): Human => ({ id, orgId, name: email.split("@")[0], email, status, createdAt: now });
const agent = (id: string, name: string, ownerId: string, orgId = "o-acme"): Agent => ({
  id,
  orgId,
  name,
  description: "",
  ownerId,
  status: "active",
  statusReason: null,
  createdAt: now,
  updatedAt: now,
  skills: [{ name: "deploy", version: "1.2.0", registeredAt: now }],
});

const ORGS = [org("o-acme", "acme"), org("o-globex", "globex")];
const HUMANS = [
  human("h-alice", "o-acme", "alice@acme.example"),
  human("h-bob", "o-acme", "bob@acme.example"),
  human("h-carol", "o-acme", "carol@acme.example"),
  human("h-gone", "o-acme", "gone@acme.example", "deactivated"),
  human("h-gina", "o-globex", "gina@globex.example"),
];
const AGENTS = [agent("a-deploy", "deploy-bot", "h-alice"), agent("a-other", "other-bot", "h-alice"), agent("a-globex", "globex-bot", "h-gina", "o-globex")];

const directory: Directory = {
  agentContext: (id) => {
    const a = AGENTS.find((x) => x.id === id);
    return a ? { agent: a, organization: ORGS.find((o) => o.id === a.orgId)!, owner: HUMANS.find((h) => h.id === a.ownerId) ?? null } : null;
  },
  human: (id) => HUMANS.find((h) => h.id === id),
  humanByEmail: (orgId, email) => HUMANS.find((h) => h.orgId === orgId && h.email === email),
  organization: (id) => ORGS.find((o) => o.id === id),
};

const oidc = (email: string | null, over: Partial<Extract<Principal, { kind: "human" }>> = {}): Principal => ({
  kind: "human",
  issuer: "https://idp.example",
  subject: `sub-${email}`,
  name: email ?? "nameless",
  email,
  roles: [],
  orgId: "o-acme",
  ...over,
});
const key = (role: "approver" | "admin" | "auditor", orgId: string | null, id = `k-${role}`): Principal => ({ kind: "api_key", id, name: `${role} key`, role, orgId });
const asAgent = (agentId = "a-deploy"): Principal => ({ kind: "agent", agentId, credentialId: "c-1", orgId: "o-acme", onBehalfOf: null });

const production: DecisionRequest = { action: "deploy", resource: "production", purpose: "release 1.4.0", skill: { name: "deploy", version: "1.2.0" } };
const staging: DecisionRequest = { ...production, resource: "staging" };
const caller = (agentId = "a-deploy") => ({ agentId, credentialId: "c-1", onBehalfOf: null });

type PolicyAnswer = Record<string, unknown>;
/** Production needs the accountable human (by default); staging is permitted. */
const needsApproval = (approval: PolicyAnswer = { approvers: { accountable_human: true } }) => (input: unknown) =>
  (input as { request: { resource: string } }).request.resource.startsWith("production")
    ? { allow: false, reasons: ["production needs a human"], reason_codes: ["approval_required"], approval }
    : { allow: true, reasons: ["ok"], reason_codes: ["permitted_by_skill"] };

function harness(options: { settings?: Partial<ApprovalSettings>; policy?: (input: unknown) => unknown; store?: FakeApprovalStore; chron?: ReturnType<typeof fakeChron> } = {}) {
  const store = options.store ?? new FakeApprovalStore();
  const chron = options.chron ?? fakeChron(store);
  const settings: ApprovalSettings = {
    defaultTtlSeconds: 3600,
    maxTtlSeconds: 86400,
    keepClosedSeconds: 86400,
    maxOpenPerAgent: 3,
    maxWaiters: 10,
    publicUrl: "https://claiim.example",
    webhook: null,
    userAgent: "test",
    ...options.settings,
  };
  const logger = createLogger("silent");
  const approvals = new ApprovalService({ store, record: chron.record, redact: (c) => c, directory, logger }, settings);
  let evaluate = options.policy ?? needsApproval();
  const policy: ActivePolicy = { version: 7, revision: "7-sha256:x", digest: "sha256:x", activatedAt: now, signedBy: "k", data: {}, evaluate: async (i) => ({ ok: true, value: evaluate(i) as RegoValue, ms: 0 }) };
  const decisions = new DecisionService(
    { agentContext: (id) => directory.agentContext(id), activePolicy: () => policy, shadowPolicy: () => null, record: (c) => chron.writer.append(c), claimOf: (a, k) => chron.writer.claimOf(a, k), redact: (c) => c, approvals },
    logger,
  );
  const contents = () => chron.store.rows.map((r) => JSON.parse(r.content) as DecisionContent | EventContent);
  const decisionsRecorded = () => contents().filter((c): c is DecisionContent => c.kind === "decision");
  return {
    chron,
    store,
    approvals,
    decide: (req: DecisionRequest, agentId?: string) => decisions.decide(caller(agentId), req),
    setPolicy: (fn: (input: unknown) => unknown) => (evaluate = fn),
    contents,
    decisionsRecorded,
    approvalEvents: () => chron.events().filter((e) => e.type.startsWith("approval.")),
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("ApprovalService with the decision path", () => {
  test("approval_required: a new approval bound to the request, recorded with the decision in one commit, nothing allowed", async () => {
    const h = harness();
    const res = await h.decide(production);
    expect(res).toMatchObject({
      decision: "approval_required",
      allow: false,
      reasons: ["production needs a human"],
      reason_codes: ["approval_required"],
      approval: {
        status: "pending",
        url: `https://claiim.example/v1/approvals/${res.approval!.id}`,
        approvers: { accountable_human: { id: "h-alice", email: "alice@acme.example" }, roles: [], humans: [] },
      },
    });
    const stored = h.store.rows.get(res.approval!.id)!;
    expect(stored).toMatchObject({ status: "pending", agentId: "a-deploy", ownerId: "h-alice", decisionId: res.decision_id, request: { ...production, on_behalf_of: null }, policyVersion: 7 });
    expect(stored.expiresAt.getTime() - Date.parse(res.timestamp)).toBe(3600 * 1000);
    const [decision, requested] = h.contents();
    expect(decision).toMatchObject({ kind: "decision", decision: "approval_required", approval: { id: stored.id, status: "pending", requested_decision_id: res.decision_id, approvers: { accountable_human: true } } });
    expect(requested).toMatchObject({ kind: "event", type: "approval.requested", actor: { type: "agent", id: "a-deploy" }, subject: { type: "approval", id: stored.id }, agent: { id: "a-deploy" }, accountable_human: { id: "h-alice" }, after: { decision_id: res.decision_id, status: "pending" } });
    // One transaction: the two records came in a single append with the approval's insert.
    expect(h.chron.store.appendCalls).toBe(1);
  });

  test("asking again for the same request answers with the open approval; another request gets its own", async () => {
    const h = harness();
    const first = await h.decide(production);
    const again = await h.decide(production);
    expect(again).toMatchObject({ decision: "approval_required", approval: { id: first.approval!.id } });
    expect(h.store.rows.size).toBe(1);
    expect(h.approvalEvents().map((e) => e.type)).toEqual(["approval.requested"]);
    const other = await h.decide({ ...production, purpose: "hotfix" });
    expect(other.approval!.id).not.toBe(first.approval!.id);
    expect(h.store.rows.size).toBe(2);
  });

  test("the same request asked many times at once asks the human once", async () => {
    const h = harness();
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.decide(production)));
    expect(new Set(answers.map((r) => r.approval!.id)).size).toBe(1);
    expect(answers.every((r) => r.decision === "approval_required")).toBe(true);
    expect(h.store.rows.size).toBe(1);
    expect(h.approvalEvents().map((e) => e.type)).toEqual(["approval.requested"]);
    expect(h.decisionsRecorded()).toHaveLength(20);
    // When recording the first fails, the others do not answer with an approval that does not exist.
    const failing = harness();
    failing.chron.store.failNext = new Error("disk full");
    const results = await Promise.allSettled(Array.from({ length: 3 }, () => failing.decide(production)));
    const done = results.filter((r): r is PromiseFulfilledResult<Awaited<ReturnType<typeof failing.decide>>> => r.status === "fulfilled");
    expect(results.filter((r) => r.status === "rejected")).toHaveLength(1);
    expect(done.every((r) => failing.store.rows.has(r.value.approval!.id))).toBe(true);
  });

  test("the same request asked at once through two processes asks the human once: the second finds the first's approval under the writers' lock", async () => {
    const store = new FakeApprovalStore();
    const chron = fakeChron(store);
    const [a, b] = [harness({ store, chron }), harness({ store, chron })];
    const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).decide(production)));
    expect(new Set(answers.map((r) => r.approval!.id)).size).toBe(1);
    expect(answers.every((r) => r.decision === "approval_required" && r.approval!.status === "pending")).toBe(true);
    expect(store.rows.size).toBe(1);
    expect(a.approvalEvents().map((e) => e.type)).toEqual(["approval.requested"]);
    expect(a.decisionsRecorded()).toHaveLength(10);
    expect(chron.writer.health().failing).toBeNull();
    // Once that approval is closed (used), the same request asks for a new one.
    const id = answers[0].approval!.id;
    await a.approvals.approve(id, oidc("alice@acme.example"), "ok");
    expect((await a.decide({ ...production, approval_id: id })).allow).toBe(true);
    const fresh = harness({ store, chron });
    const again = await fresh.decide(production);
    expect(again.approval!.id).not.toBe(id);
    expect(store.rows.size).toBe(2);
  });

  test("approved by the accountable human, then allowed exactly once; the second use is a recorded deny", async () => {
    const h = harness();
    const asked = await h.decide(production);
    const id = asked.approval!.id;
    const approved = await h.approvals.approve(id, oidc("alice@acme.example"), "CHG-42 reviewed");
    expect(approved).toMatchObject({ status: "approved", decisionReason: "CHG-42 reviewed", decidedBy: { actor: { type: "human" }, human: { id: "h-alice" } } });

    const allowed = await h.decide({ ...production, approval_id: id });
    expect(allowed).toMatchObject({ decision: "allow", allow: true, reason_codes: ["approval_granted"], approval: { id, status: "used", approved_by: { type: "human", human: { email: "alice@acme.example" } } } });
    expect(h.store.rows.get(id)).toMatchObject({ status: "used", usedByDecisionId: allowed.decision_id });

    const again = await h.decide({ ...production, approval_id: id });
    expect(again).toMatchObject({ decision: "deny", allow: false, reason_codes: ["approval_used"], approval: { id, status: "used" } });
    const recorded = h.decisionsRecorded().slice(-2);
    expect(recorded.map((d) => [d.decision, d.policy_decision, d.reason_codes])).toEqual([
      ["allow", "approval_required", ["approval_granted"]],
      ["deny", "approval_required", ["approval_used"]],
    ]);
    expect(recorded[0].approval).toMatchObject({ id, status: "used", requested_decision_id: asked.decision_id, approved_by: { human: { id: "h-alice" } } });
    expect(h.approvalEvents().map((e) => e.type)).toEqual(["approval.requested", "approval.approved", "approval.used"]);
    expect(h.approvalEvents()[1]).toMatchObject({ actor: { type: "human", id: "https://idp.example#sub-alice@acme.example" }, reason: "CHG-42 reviewed", after: { status: "approved", approved_by: { human: { id: "h-alice" } } } });
  });

  test("two concurrent uses of one approval: exactly one allow, the other a recorded deny", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    const results = await Promise.all(Array.from({ length: 5 }, () => h.decide({ ...production, approval_id: id })));
    expect(results.filter((r) => r.allow)).toHaveLength(1);
    expect(results.filter((r) => !r.allow).map((r) => r.reason_codes)).toEqual(Array(4).fill(["approval_used"]));
    expect(h.decisionsRecorded().filter((d) => d.decision === "allow")).toHaveLength(1);
    expect(h.decisionsRecorded().filter((d) => d.reason_codes?.[0] === "approval_used")).toHaveLength(4);
  });

  test("an approval another process spent (the database says so) is refused, and no allow is recorded", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    // A second CLAIIM process, or a hand edit: the row is no longer approved, though this process's memory says it is.
    h.store.rows.get(id)!.status = "used";
    const res = await h.decide({ ...production, approval_id: id });
    expect(res).toMatchObject({ decision: "deny", reason_codes: ["approval_used"] });
    expect(h.decisionsRecorded().filter((d) => d.decision === "allow")).toHaveLength(0);
    expect(h.approvalEvents().map((e) => e.type)).not.toContain("approval.used");
  });

  test("a changed request is a recorded deny naming what differs, and the approval stays usable for the exact one", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    const moved = await h.decide({ ...production, resource: "production/db", approval_id: id });
    expect(moved).toMatchObject({ decision: "deny", reason_codes: ["approval_mismatch"], reasons: [expect.stringContaining("resource differ")] });
    const repurposed = await h.decide({ ...production, purpose: "something else", approval_id: id });
    expect(repurposed.reasons[0]).toMatch(/purpose differ/);
    const otherVersion = await h.decide({ ...production, skill: { name: "deploy", version: "1.2.0" }, on_behalf_of: { subject: "carol@acme.example" }, approval_id: id });
    expect(otherVersion.reasons[0]).toMatch(/on_behalf_of differ/);
    expect((await h.decide({ ...production, approval_id: id })).allow).toBe(true);
  });

  test("pending, rejected, unknown and another agent's approvals allow nothing, each with its code", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    expect((await h.decide({ ...production, approval_id: id })).reason_codes).toEqual(["approval_pending"]);
    expect((await h.decide({ ...production, approval_id: id }, "a-other")).reason_codes).toEqual(["approval_not_found"]);
    expect((await h.decide({ ...production, approval_id: "00000000-0000-4000-8000-000000000000" })).reason_codes).toEqual(["approval_not_found"]);
    await h.approvals.reject(id, oidc("alice@acme.example"), "not during the freeze");
    const rejected = await h.decide({ ...production, approval_id: id });
    expect(rejected).toMatchObject({ decision: "deny", reason_codes: ["approval_rejected"], reasons: [expect.stringContaining("not during the freeze")] });
    expect(h.approvalEvents().map((e) => e.type)).toEqual(["approval.requested", "approval.rejected"]);
  });

  test("an approval given where the policy now denies outright, or now allows, is not spent", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    h.setPolicy(() => ({ allow: false, reasons: ["freeze"], reason_codes: ["forbidden_by_skill"] }));
    expect(await h.decide({ ...production, approval_id: id })).toMatchObject({ decision: "deny", reason_codes: ["forbidden_by_skill"] });
    h.setPolicy(needsApproval());
    expect(h.store.rows.get(id)!.status).toBe("approved");
    expect((await h.decide({ ...production, approval_id: id })).allow).toBe(true);
  });

  test("expiry is recorded by CLAIIM itself, without anyone polling; an expired approval allows nothing", async () => {
    const h = harness({ policy: needsApproval({ approvers: { accountable_human: true }, ttl_seconds: 1 }) });
    const pending = (await h.decide(production)).approval!.id;
    const approved = (await h.decide({ ...production, purpose: "second" })).approval!.id;
    await h.approvals.approve(approved, oidc("alice@acme.example"), "ok");
    await sleep(1300);
    expect(h.approvalEvents().filter((e) => e.type === "approval.expired").map((e) => [e.subject.id, (e.before as { status: string }).status])).toEqual(
      expect.arrayContaining([
        [pending, "pending"],
        [approved, "approved"],
      ]),
    );
    expect([h.store.rows.get(pending)!.status, h.store.rows.get(approved)!.status]).toEqual(["expired", "expired"]);
    expect((await h.decide({ ...production, purpose: "second", approval_id: approved })).reason_codes).toEqual(["approval_expired"]);
    await expect(h.approvals.approve(pending, oidc("alice@acme.example"), "too late")).rejects.toMatchObject({ status: 409, code: "approval_closed" });
    await h.approvals.stop();
  });

  test("the policy's ttl is capped by the configured maximum", async () => {
    const h = harness({ policy: needsApproval({ approvers: { accountable_human: true }, ttl_seconds: 10 ** 9 }), settings: { maxTtlSeconds: 600 } });
    const res = await h.decide(production);
    expect(Date.parse(res.approval!.expires_at) - Date.parse(res.timestamp)).toBe(600 * 1000);
  });

  test("when Chron cannot record the use, nothing is allowed and the approval stays usable", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    h.chron.store.failNext = new Error("disk full");
    await expect(h.decide({ ...production, approval_id: id })).rejects.toMatchObject({ status: 503, code: "chron_unavailable" });
    expect(h.store.rows.get(id)!.status).toBe("approved");
    expect(h.decisionsRecorded().filter((d) => d.decision === "allow")).toHaveLength(0);
    expect((await h.decide({ ...production, approval_id: id })).allow).toBe(true);
  });

  test("when Chron cannot record the request, no approval exists", async () => {
    const h = harness();
    h.chron.store.failNext = new Error("disk full");
    await expect(h.decide(production)).rejects.toMatchObject({ status: 503, code: "chron_unavailable" });
    expect(h.store.rows.size).toBe(0);
    expect(h.approvals.stats().held).toBe(0);
  });

  test("an agent cannot pile up approvals, and a policy naming nobody who could approve is a deny", async () => {
    const h = harness();
    for (const p of ["a", "b", "c"]) expect((await h.decide({ ...production, purpose: p })).decision).toBe("approval_required");
    expect(await h.decide({ ...production, purpose: "d" })).toMatchObject({ decision: "deny", reason_codes: ["approval_limit"] });
    const nobody = harness({ policy: needsApproval({ approvers: { humans: ["ghost@acme.example", "gone@acme.example"] } }) });
    expect(await nobody.decide(production)).toMatchObject({ decision: "deny", reason_codes: ["approval_unavailable"] });
  });

  test.each([
    ["an approval naming no approver", { approvers: {} }],
    ["an unknown role", { approvers: { roles: ["wizard"] } }],
    ["a listed human who is no email", { approvers: { humans: ["not an email"] } }],
    ["an unknown field", { approvers: { accountable_human: true }, agents: ["a-deploy"] }],
    ["a ttl that is no number", { approvers: { accountable_human: true }, ttl_seconds: "soon" }],
  ])("fails closed on %s: evaluation_failed, no approval", async (_name, approval) => {
    const h = harness({ policy: needsApproval(approval) });
    expect(await h.decide(production)).toMatchObject({ decision: "deny", reason_codes: ["evaluation_failed"] });
    expect(h.store.rows.size).toBe(0);
  });

  test("reason codes must pair with reasons, and an allow cannot also ask for approval", async () => {
    const h = harness({ policy: () => ({ allow: false, reasons: ["a", "b"], reason_codes: ["x"] }) });
    expect(await h.decide(staging)).toMatchObject({ decision: "deny", reason_codes: ["evaluation_failed"] });
    h.setPolicy(() => ({ allow: false, reasons: ["a"], reason_codes: ["Not A Code"] }));
    expect((await h.decide(staging)).reason_codes).toEqual(["evaluation_failed"]);
    h.setPolicy(() => ({ allow: true, reasons: ["a"], approval: { approvers: { accountable_human: true } } }));
    expect((await h.decide(staging)).reason_codes).toEqual(["evaluation_failed"]);
    h.setPolicy(() => ({ allow: false, reasons: ["old policy"] }));
    expect(await h.decide(staging)).toMatchObject({ reasons: ["old policy"], reason_codes: ["policy_reason"] });
  });
});

describe("who may approve", () => {
  async function pendingFor(h: ReturnType<typeof harness>, req: DecisionRequest = production) {
    return h.store.rows.get((await h.decide(req)).approval!.id)!;
  }

  test("the accountable human, by their verified email; nobody else by email alone", async () => {
    const h = harness();
    const a = await pendingFor(h);
    const check = (p: Principal, relay?: string) => {
      const r = checkApprover(a, p, directory, relay);
      return r.ok ? "ok" : r.error.code;
    };
    expect(check(oidc("alice@acme.example"))).toBe("ok");
    expect(check(oidc("ALICE@acme.example".toLowerCase(), { orgId: null }))).toBe("ok");
    expect(check(oidc("bob@acme.example"))).toBe("approver_not_allowed");
    expect(check(oidc(null))).toBe("approver_not_allowed");
    // A token confined to another organisation answers nothing here, whatever email it carries.
    expect(check(oidc("alice@acme.example", { orgId: "o-globex" }))).toBe("approver_not_allowed");
    expect(check(oidc("gina@globex.example", { orgId: "o-globex" }))).toBe("approver_not_allowed");
    expect(check(asAgent())).toBe("agent_not_allowed");
    expect(check(oidc("alice@acme.example"), "alice@acme.example")).toBe("relay_not_allowed");
  });

  test("an approver key relays a named approver's answer; it is no approver by itself unless the policy names its role", async () => {
    const h = harness();
    const a = await pendingFor(h);
    const check = (p: Principal, relay?: string) => {
      const r = checkApprover(a, p, directory, relay);
      return r.ok ? r.ref : r.error.code;
    };
    expect(check(key("approver", "o-acme"), "alice@acme.example")).toMatchObject({ actor: { type: "api_key", id: "k-approver" }, human: { id: "h-alice" } });
    expect(check(key("approver", "o-acme"), "bob@acme.example")).toBe("approver_not_allowed");
    expect(check(key("approver", "o-acme"))).toBe("approver_not_allowed");
    expect(check(key("approver", "o-globex"), "alice@acme.example")).toBe("approver_not_allowed");
    expect(check(key("admin", null))).toBe("approver_not_allowed");
    expect(check(key("admin", "o-acme"), "alice@acme.example")).toBe("relay_not_allowed");

    const byRole = harness({ policy: needsApproval({ approvers: { roles: ["approver"], humans: ["bob@acme.example"] } }) });
    const r = await pendingFor(byRole);
    const checkRole = (p: Principal) => (checkApprover(r, p, directory).ok ? "ok" : "refused");
    expect(checkRole(key("approver", "o-acme"))).toBe("ok");
    expect(checkRole(oidc("carol@acme.example", { roles: ["approver"] }))).toBe("ok");
    // A role counts inside the organisation only: a human who spans every organisation is not one of its approvers by role.
    expect(checkRole(oidc("carol@acme.example", { roles: ["approver"], orgId: null }))).toBe("refused");
    expect(checkRole(oidc("bob@acme.example"))).toBe("ok");
    expect(checkRole(oidc("alice@acme.example"))).toBe("refused");
  });

  test("the user the request was made for never approves it, by token or by relay", async () => {
    const h = harness();
    const a = await pendingFor(h, { ...production, on_behalf_of: { subject: "alice@acme.example" } });
    expect(checkApprover(a, oidc("alice@acme.example"), directory)).toMatchObject({ ok: false, error: { code: "approval_self" } });
    expect(checkApprover(a, key("approver", "o-acme"), directory, "alice@acme.example")).toMatchObject({ ok: false, error: { code: "approval_self" } });
    await expect(h.approvals.approve(a.id, oidc("alice@acme.example"), "mine")).rejects.toMatchObject({ status: 403, code: "approval_self" });
    const bySubject = await pendingFor(h, { ...production, purpose: "x", on_behalf_of: { subject: "sub-alice@acme.example" } });
    expect(checkApprover(bySubject, oidc("alice@acme.example"), directory)).toMatchObject({ ok: false, error: { code: "approval_self" } });
  });

  test("outside the organisation the approval does not exist; decided ones cannot be decided again", async () => {
    const h = harness();
    const a = await pendingFor(h);
    await expect(h.approvals.approve(a.id, key("approver", "o-globex"), "x", "alice@acme.example")).rejects.toMatchObject({ status: 404, code: "approval_not_found" });
    await expect(h.approvals.get(a.id, key("auditor", "o-globex"))).rejects.toMatchObject({ status: 404 });
    await expect(h.approvals.get(a.id, asAgent("a-other"))).rejects.toMatchObject({ status: 404 });
    expect((await h.approvals.get(a.id, asAgent())).id).toBe(a.id);
    await h.approvals.approve(a.id, key("approver", "o-acme"), "ok", "alice@acme.example");
    await expect(h.approvals.reject(a.id, oidc("alice@acme.example"), "changed my mind")).rejects.toMatchObject({ status: 409, code: "approval_closed", extra: { approval_status: "approved" } });
    expect(h.approvalEvents().map((e) => e.type)).toEqual(["approval.requested", "approval.approved"]);
  });

  test("a human without a role sees only what they may answer; the list filters by approver", async () => {
    const h = harness({ policy: needsApproval({ approvers: { humans: ["bob@acme.example"] } }) });
    const forBob = await pendingFor(h);
    h.setPolicy(needsApproval());
    const forAlice = await pendingFor(h, { ...production, purpose: "other" });
    const ids = (p: Principal, approver?: string) => h.approvals.list({ limit: 100, approver }, p).map((a) => a.id);
    expect(ids(oidc("bob@acme.example"))).toEqual([forBob.id]);
    expect(ids(oidc("alice@acme.example"))).toEqual([forAlice.id]);
    expect(ids(key("auditor", "o-acme")).sort()).toEqual([forBob.id, forAlice.id].sort());
    expect(ids(key("auditor", "o-acme"), "bob@acme.example")).toEqual([forBob.id]);
    expect(ids(key("approver", "o-acme"), "me")).toEqual([]);
    expect(ids(key("auditor", "o-globex"))).toEqual([]);
    expect(ids(asAgent("a-other"))).toEqual([]);
  });
});

describe("waiting for an answer", () => {
  test("a long-poll ends as soon as the approval is decided, and at once when it is not pending", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    const started = Date.now();
    const waiting = h.approvals.wait(id, asAgent(), 30);
    await sleep(50);
    expect(h.approvals.stats().waiting).toBe(1);
    await h.approvals.approve(id, oidc("alice@acme.example"), "ok");
    expect((await waiting).status).toBe("approved");
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(h.approvals.stats().waiting).toBe(0);
    expect((await h.approvals.wait(id, asAgent(), 30)).status).toBe("approved");
  });

  test("a poll ends when the caller hangs up, when the time is up, and when CLAIIM stops", async () => {
    const h = harness();
    const id = (await h.decide(production)).approval!.id;
    const gone = new AbortController();
    const hungUp = h.approvals.wait(id, asAgent(), 30, gone.signal);
    gone.abort();
    expect((await hungUp).status).toBe("pending");
    expect((await h.approvals.wait(id, asAgent(), 1)).status).toBe("pending");
    const stopping = h.approvals.wait(id, asAgent(), 30);
    await h.approvals.stop();
    expect((await stopping).status).toBe("pending");
    expect(h.approvals.stats().waiting).toBe(0);
  });
});

describe("restarts", () => {
  test("approvals survive a restart; those that expired while CLAIIM was down are expired and recorded at start", async () => {
    const chron = fakeChron();
    const store = new FakeApprovalStore();
    const h = harness({ chron, store });
    const kept = (await h.decide(production)).approval!.id;
    await h.approvals.approve(kept, oidc("alice@acme.example"), "ok");
    const lapsed = (await h.decide({ ...production, purpose: "lapsed" })).approval!.id;
    await h.approvals.stop();
    store.rows.get(lapsed)!.expiresAt = new Date(Date.now() - 1000);

    const again = harness({ chron, store });
    await again.approvals.start();
    await sleep(100);
    expect(store.rows.get(lapsed)!.status).toBe("expired");
    expect(chron.events().filter((e) => e.type === "approval.expired").map((e) => e.subject.id)).toEqual([lapsed]);
    expect((await again.decide({ ...production, approval_id: kept })).allow).toBe(true);
    await again.approvals.stop();
  });
});
