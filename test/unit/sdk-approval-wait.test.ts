import { getEventListeners } from "node:events";
import { ApprovalRequiredError, Claiim, ClaiimError, DeniedError, ProtocolError, RequestError } from "@claiim/sdk";

/**
 * Waiting for an approval on answers a real CLAIIM rarely gives (a newer status, a confused proxy,
 * an approval named at another host), on a scripted fetch. Whatever the polls say, only CLAIIM's
 * allow for the decision asked with the approval lets the action run.
 */
type Answer = { status: number; body?: unknown } | Error;

function scripted(script: { decisions: Answer[]; polls: Answer[] }) {
  const calls: { url: string; method: string; headers: Record<string, string>; body: string }[] = [];
  const impl = (async (url: string, init: RequestInit) => {
    const headers = init.headers as Record<string, string>;
    calls.push({ url, method: String(init.method), headers, body: String(init.body ?? "") });
    if (url.endsWith("/oauth/token")) return new Response(JSON.stringify({ access_token: "t", token_type: "Bearer", expires_in: 300 }), { status: 200 });
    const next = (url.includes("/v1/approvals/") ? script.polls : script.decisions).shift();
    if (!next) throw new Error(`no more scripted answers for ${url}`);
    if (next instanceof Error) throw next;
    return new Response(JSON.stringify(next.body), { status: next.status });
  }) as unknown as typeof fetch;
  const client = new Claiim({ url: "http://claiim.test", clientId: "c", clientSecret: "s", fetch: impl, retry: { baseDelayMs: 1, maxDelayMs: 20 } });
  return { client, calls, decisions: () => calls.filter((c) => c.url.endsWith("/v1/decisions")), polls: () => calls.filter((c) => c.url.includes("/v1/approvals/")) };
}

const request = { action: "deploy", resource: "production", purpose: "p", skill: "deploy@1.2.0" };
const pending = { id: "ap-1", status: "pending", expires_at: "2030-01-01T00:00:00Z", url: "http://claiim.test/v1/approvals/ap-1" };
const required = (approval: object = pending) => ({ status: 200, body: { decision_id: "d-1", decision: "approval_required", allow: false, reasons: ["needs a human"], reason_codes: ["approval_required"], approval, policy: null, timestamp: "t", chron: { seq: 1, hash: "h" } } });
const decided = (decision: string, allow: boolean, code: string) => ({ status: 200, body: { decision_id: "d-2", decision, allow, reasons: [code], reason_codes: [code], policy: null, timestamp: "t", chron: { seq: 2, hash: "h2" } } });
const poll = (over: object) => ({ status: 200, body: { ...pending, ...over } });
const wait = { waitForApproval: { timeoutMs: 5000 } };

describe("@claiim/sdk waiting for an approval, on scripted answers", () => {
  test("approved: the same request is asked again with approval_id under a new Idempotency-Key, and only its allow runs the action", async () => {
    const { client, decisions } = scripted({ decisions: [required(), decided("allow", true, "approval_granted")], polls: [poll({ status: "approved" })] });
    expect(await client.guard(request, () => "ran", wait)).toBe("ran");
    const [first, second] = decisions();
    expect(JSON.parse(second.body)).toEqual({ ...JSON.parse(first.body), approval_id: "ap-1" });
    expect(second.headers["Idempotency-Key"]).not.toBe(first.headers["Idempotency-Key"]);
  });

  test("approved, but CLAIIM denies the decision with the approval: DeniedError, and the action never runs", async () => {
    const { client } = scripted({ decisions: [required(), decided("deny", false, "approval_mismatch")], polls: [poll({ status: "approved" })] });
    let ran = false;
    const err = await client.guard(request, () => (ran = true), wait).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(DeniedError);
    expect(err).not.toBeInstanceOf(ApprovalRequiredError);
    expect(err).toMatchObject({ decisionId: "d-2", reasons: [{ code: "approval_mismatch" }] });
  });

  test("approved, then an answer that is not a clean allow: ProtocolError, never an allow", async () => {
    const broken = { ...decided("allow", false, "approval_granted") };
    const { client } = scripted({ decisions: [required(), broken], polls: [poll({ status: "approved" })] });
    let ran = false;
    await expect(client.guard(request, () => (ran = true), wait)).rejects.toBeInstanceOf(ProtocolError);
    expect(ran).toBe(false);
  });

  test("a status the SDK does not know, or an answer about another approval, is a ProtocolError and asks nothing more", async () => {
    for (const answer of [poll({ status: "escalated" }), poll({ id: "ap-2", status: "approved" }), { status: 200, body: { status: "approved" } }, { status: 200, body: "<html>ok</html>" }]) {
      const { client, decisions } = scripted({ decisions: [required()], polls: [answer] });
      let ran = false;
      await expect(client.guard(request, () => (ran = true), wait)).rejects.toBeInstanceOf(ProtocolError);
      expect(ran).toBe(false);
      expect(decisions()).toHaveLength(1);
    }
  });

  test("the agent's token goes only to the configured CLAIIM, whatever URL the approval names", async () => {
    const elsewhere = { ...pending, url: "http://collector.evil.test/v1/approvals/ap-1" };
    const { client, calls } = scripted({ decisions: [required(elsewhere), decided("allow", true, "approval_granted")], polls: [poll({ status: "approved", url: elsewhere.url })] });
    await client.guard(request, () => 1, wait);
    expect(calls.every((c) => c.url.startsWith("http://claiim.test/"))).toBe(true);
    expect(calls.find((c) => c.url.includes("/v1/approvals/"))!.url).toBe("http://claiim.test/v1/approvals/ap-1?wait=5");
  });

  test("polls that come back pending at once do not spin; the timeout still holds; nothing is left listening on the caller's signal", async () => {
    const { client, polls } = scripted({ decisions: [required()], polls: Array.from({ length: 50 }, () => poll({})) });
    const caller = new AbortController();
    const started = Date.now();
    const err = await client.guard(request, () => 1, { waitForApproval: { timeoutMs: 2500 }, signal: caller.signal }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: "ApprovalTimeoutError", code: "approval_pending", approval: { id: "ap-1", status: "pending" } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2400);
    expect(polls().length).toBeLessThanOrEqual(4);
    expect(getEventListeners(caller.signal, "abort")).toHaveLength(0);
  });

  test("a poll that fails on the network is retried; a 404 is a RequestError; neither is an allow", async () => {
    const flaky = scripted({ decisions: [required(), decided("allow", true, "approval_granted")], polls: [new TypeError("fetch failed"), poll({ status: "approved" })] });
    expect(await flaky.client.guard(request, () => "ran", wait)).toBe("ran");
    expect(flaky.polls()).toHaveLength(2);
    const gone = scripted({ decisions: [required()], polls: [{ status: 404, body: { code: "approval_not_found", detail: "no such approval" } }] });
    await expect(gone.client.guard(request, () => 1, wait)).rejects.toMatchObject({ name: "RequestError", code: "approval_not_found" });
    expect(RequestError).toBeDefined();
  });

  test("waitForApproval needs an approval_required decision that names its approval and request", async () => {
    const { client } = scripted({ decisions: [decided("deny", false, "no_rule_permits")], polls: [] });
    const denied = await client.decide(request);
    await expect(client.waitForApproval(denied)).rejects.toBeInstanceOf(ClaiimError);
    await expect(client.waitForApproval({ ...denied, approval: pending, request: undefined })).rejects.toThrow(/approval_required decision/);
  });
});
