import { DecisionService, type DecisionDeps } from "../../src/decisions/decision-service";
import type { ChronContent, ChronRow, DecisionContent } from "../../src/chron/record";
import type { AgentContext } from "../../src/identity/identity-service";
import type { ActivePolicy } from "../../src/policy/policy-engine";
import { createLogger } from "../../src/lib/logger";
import { outcomeOf } from "../support/pool";

const now = new Date();
function context(over: { status?: "active" | "suspended"; owner?: null | "deactivated" } = {}): AgentContext {
  return {
    agent: { id: "a-1", orgId: "o-1", name: "deploy-bot", description: "", ownerId: "h-1", status: over.status ?? "active", statusReason: null, createdAt: now, updatedAt: now, skills: [{ name: "deploy", version: "1.2.0", registeredAt: now }] },
    organization: { id: "o-1", slug: "acme", name: "Acme", createdAt: now },
    owner: over.owner === null ? null : { id: "h-1", orgId: "o-1", name: "Alice", email: "alice@x", status: over.owner ?? "active", createdAt: now },
  };
}

function policy(evaluate: (input: unknown) => unknown, version = 3): ActivePolicy {
  return { version, revision: `${version}-sha256:abc`, digest: "sha256:abc", activatedAt: now, signedBy: "kid-test", data: {}, evaluate: async (input) => outcomeOf(() => evaluate(input)) };
}

const request = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" } };
const caller = { agentId: "a-1", credentialId: "c-1", onBehalfOf: null };

function harness(deps: Partial<DecisionDeps> = {}) {
  const recorded: ChronContent[] = [];
  const full: DecisionDeps = {
    agentContext: () => context(),
    activePolicy: () => policy(() => ({ allow: true, reasons: ["ok"] })),
    shadowPolicy: () => null,
    record: async (c) => {
      recorded.push(c);
      return { seq: recorded.length, hash: "h".repeat(64) } as ChronRow;
    },
    claimOf: async () => null,
    redact: (c) => c,
    ...deps,
  };
  return { service: new DecisionService(full, createLogger("silent")), recorded };
}

describe("DecisionService", () => {
  test("a shadow is evaluated on the same input and recorded beside the decision, never enforced", async () => {
    const shadowSaw: unknown[] = [];
    const strict = policy((input) => (shadowSaw.push(input), { allow: false, reasons: ["staging freeze"] }), 4);
    const { service, recorded } = harness({ shadowPolicy: () => strict });
    const res = await service.decide(caller, request);
    expect(res).toMatchObject({ allow: true, reasons: ["ok"], policy: { version: 3 } });
    expect(JSON.stringify(res)).not.toMatch(/shadow|freeze/);
    expect(shadowSaw).toEqual([(recorded[0] as DecisionContent).input]);
    expect(recorded[0]).toMatchObject({ decision: "allow", shadow: { version: 4, revision: "4-sha256:abc", decision: "deny", agrees: false, reasons: ["staging freeze"] } });

    const same = harness({ shadowPolicy: () => policy(() => ({ allow: true, reasons: ["also ok"] }), 4) });
    await same.service.decide(caller, request);
    expect((same.recorded[0] as DecisionContent).shadow).toEqual({ version: 4, revision: "4-sha256:abc", decision: "allow", agrees: true });
  });

  test("a shadow that throws is a shadow deny; the real decision does not change", async () => {
    const broken = policy(() => {
      throw new Error("wasm trap");
    }, 4);
    const { service, recorded } = harness({ shadowPolicy: () => broken });
    expect((await service.decide(caller, request)).allow).toBe(true);
    expect((recorded[0] as DecisionContent).shadow).toMatchObject({ decision: "deny", agrees: false, reasons: ["policy evaluation failed: wasm trap"] });
  });

  test("the policy sees CLAIIM's records of the agent, and the request, and nothing else", async () => {
    const seen: unknown[] = [];
    const { service, recorded } = harness({ activePolicy: () => policy((i) => (seen.push(i), { allow: true, reasons: ["ok"] })) });
    const res = await service.decide(caller, request);
    expect(seen).toEqual([
      {
        agent: { id: "a-1", name: "deploy-bot", status: "active", organization: "acme", skills: { deploy: { version: "1.2.0" } } },
        accountable_human: { id: "h-1", name: "Alice", email: "alice@x", status: "active" },
        on_behalf_of: null,
        request,
      },
    ]);
    expect(res).toMatchObject({ decision: "allow", allow: true, reasons: ["ok"], policy: { version: 3, revision: "3-sha256:abc" }, chron: { seq: 1 } });
    expect(recorded[0]).toMatchObject({ decision_id: res.decision_id, input: seen[0], requested_by: { credential_id: "c-1" }, bundles: { claiim: { revision: "3-sha256:abc" } } });
  });

  test.each([
    ["no active policy", () => null, /^no policy is active/],
    ["a policy that throws", () => policy(() => { throw new Error("wasm trap"); }), /^policy evaluation failed: wasm trap/],
    ["a policy with no result", () => policy(() => undefined), /^policy evaluation failed: the policy did not return/],
    ["a policy with a malformed result", () => policy(() => ({ allow: "yes", reasons: [] })), /^policy evaluation failed/],
  ])("fails closed on %s: a recorded deny with the cause", async (_name, active, reason) => {
    const { service, recorded } = harness({ activePolicy: active as DecisionDeps["activePolicy"] });
    const res = await service.decide(caller, request);
    expect(res.allow).toBe(false);
    expect(res.reasons[0]).toMatch(reason);
    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ decision: "deny", reasons: res.reasons });
  });

  test.each([
    ["a suspended agent", context({ status: "suspended" }), "agent deploy-bot is suspended"],
    ["an agent without an accountable human", context({ owner: null }), "agent deploy-bot has no accountable human"],
    ["an agent whose human left", context({ owner: "deactivated" }), "accountable human alice@x is deactivated"],
  ])("no policy can allow %s", async (_name, ctx, reason) => {
    const { service } = harness({ agentContext: () => ctx, activePolicy: () => policy(() => ({ allow: true, reasons: ["permissive"] })) });
    expect(await service.decide(caller, request)).toMatchObject({ allow: false, reasons: [reason] });
  });

  test("a deny always carries a reason", async () => {
    const { service } = harness({ activePolicy: () => policy(() => ({ allow: false, reasons: [] })) });
    expect((await service.decide(caller, request)).reasons).toEqual(["denied by policy, which gave no reason"]);
  });

  test("when Chron cannot record, the answer is 503 and no allow", async () => {
    const { service } = harness({ record: async () => Promise.reject(new Error("database is locked")) });
    await expect(service.decide(caller, request)).rejects.toMatchObject({ status: 503, code: "chron_unavailable" });
  });

  test("the version answered is the one evaluated, even if a swap happens while recording", async () => {
    let active = policy(() => ({ allow: true, reasons: ["v3"] }), 3);
    const { service } = harness({
      activePolicy: () => active,
      record: async (c) => {
        active = policy(() => ({ allow: false, reasons: ["v4"] }), 4);
        return { seq: 1, hash: "x", content: JSON.stringify(c) } as ChronRow;
      },
    });
    expect(await service.decide(caller, request)).toMatchObject({ allow: true, policy: { version: 3 } });
  });

  test("on-behalf-of: the token's user wins, the body may name one, and the two must agree", async () => {
    const { service, recorded } = harness();
    await service.decide({ ...caller, onBehalfOf: { subject: "carol@customer.example" } }, request);
    await service.decide(caller, { ...request, on_behalf_of: { subject: "dave@customer.example" } });
    expect(recorded.map((r) => (r.kind === "decision" ? r.on_behalf_of : null))).toEqual([{ subject: "carol@customer.example" }, { subject: "dave@customer.example" }]);
    expect((recorded[0] as { input: { on_behalf_of: unknown } }).input.on_behalf_of).toEqual({ subject: "carol@customer.example" });
    await expect(service.decide({ ...caller, onBehalfOf: { subject: "carol@customer.example" } }, { ...request, on_behalf_of: { subject: "mallory@x" } })).rejects.toMatchObject({
      status: 400,
      code: "on_behalf_of_mismatch",
    });
  });

  test("redaction applies to the record only: the policy sees the full input", async () => {
    const seen: unknown[] = [];
    const { redact } = await import("../../src/chron/redaction");
    const { service, recorded } = harness({
      activePolicy: () => policy((i) => (seen.push(i), { allow: true, reasons: ["ok"] })),
      redact: (c) => redact(c, [{ path: "/purpose", op: "mask" }, { path: "/input/request/purpose", op: "erase" }]),
    });
    await service.decide(caller, { ...request, purpose: "ticket 123 for jane@customer.example" });
    expect((seen[0] as { request: { purpose: string } }).request.purpose).toBe("ticket 123 for jane@customer.example");
    expect(recorded[0]).toMatchObject({ purpose: "**REDACTED**", masked: ["/purpose"], erased: ["/input/request/purpose"] });
    expect(JSON.stringify(recorded[0])).not.toContain("jane@");
  });

  test("an agent unknown to the directory is an authentication failure", async () => {
    const { service, recorded } = harness({ agentContext: () => null });
    await expect(service.decide({ ...caller, agentId: "a-9" }, request)).rejects.toMatchObject({ status: 401 });
    expect(recorded).toHaveLength(0);
  });
});
