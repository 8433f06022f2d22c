import { ApprovalRequiredError, AuthenticationError, Claiim, DeniedError, ProtocolError, RequestError, UnavailableError } from "@claiim/sdk";

/** The SDK's handling of answers a real CLAIIM rarely gives (a newer outcome, a broken proxy), on a scripted fetch. */
type Scripted = { status: number; body?: unknown; headers?: Record<string, string> } | Error;

function scripted(decisions: Scripted[]) {
  const calls: { url: string; headers: Record<string, string>; body: string }[] = [];
  const impl = (async (url: string, init: RequestInit) => {
    const headers = init.headers as Record<string, string>;
    calls.push({ url, headers, body: String(init.body ?? "") });
    if (url.endsWith("/oauth/token")) return new Response(JSON.stringify({ access_token: "t", token_type: "Bearer", expires_in: 300 }), { status: 200 });
    const next = decisions.shift();
    if (!next) throw new Error("no more scripted answers");
    if (next instanceof Error) throw next;
    return new Response(next.body === undefined ? "" : typeof next.body === "string" ? next.body : JSON.stringify(next.body), { status: next.status, headers: next.headers });
  }) as unknown as typeof fetch;
  const client = new Claiim({ url: "http://claiim.test", clientId: "c", clientSecret: "s", fetch: impl, retry: { baseDelayMs: 1, maxDelayMs: 20 } });
  return { client, calls, decisionCalls: () => calls.filter((c) => c.url.endsWith("/v1/decisions")) };
}

const request = { action: "deploy", resource: "staging", purpose: "p", skill: "deploy@1.2.0" };
const answer = (decision: string, allow: boolean, extra: object = {}) => ({ decision_id: "d-1", decision, allow, reasons: ["why"], policy: null, timestamp: "t", chron: { seq: 1, hash: "h" }, ...extra });

describe("@claiim/sdk on scripted answers", () => {
  test("approval_required is not an allow: guard throws ApprovalRequiredError with the approval, and never runs", async () => {
    const approval = { id: "ap-1", expires_at: "2030-01-01T00:00:00Z", approvers: ["alice@acme.example"], url: "/v1/approvals/ap-1" };
    const { client } = scripted([{ status: 200, body: answer("approval_required", false, { approval }) }]);
    let ran = false;
    const err = await client.guard(request, () => (ran = true)).catch((e: unknown) => e);
    expect(ran).toBe(false);
    expect(err).toBeInstanceOf(ApprovalRequiredError);
    expect(err).toBeInstanceOf(DeniedError);
    expect(err).toMatchObject({ decisionId: "d-1", approval, reasons: [{ message: "why" }] });
  });

  test("an unknown outcome, even with allow: true, or allow without decision allow, is never an allow", async () => {
    for (const body of [answer("maybe", true), answer("allow", false), answer("allow", "yes" as unknown as boolean), { decision: "allow", allow: true }, "<html>ok</html>"]) {
      const { client } = scripted([{ status: 200, body }]);
      let ran = false;
      await expect(client.guard(request, () => (ran = true))).rejects.toBeInstanceOf(ProtocolError);
      expect(ran).toBe(false);
    }
    const { client } = scripted([{ status: 200, body: answer("quarantine", false) }]);
    await expect(client.guard(request, () => 1)).rejects.toMatchObject({ name: "DeniedError", code: "quarantine" });
  });

  test("reasons keep their codes when CLAIIM gives them: reason_codes[i] is the code of reasons[i]", async () => {
    const { client } = scripted([{ status: 200, body: answer("deny", false, { reasons: [{ message: "change needed", code: "change_required" }, "plain"] }) }]);
    const d = await client.decide(request);
    expect(d.reasons).toEqual([{ message: "change needed", code: "change_required" }, { message: "plain" }]);
    const zipped = scripted([{ status: 200, body: answer("deny", false, { reasons: ["a", "b"], reason_codes: ["no_rule_permits", "forbidden_by_skill"] }) }]);
    expect((await zipped.client.decide(request)).reasons).toEqual([
      { message: "a", code: "no_rule_permits" },
      { message: "b", code: "forbidden_by_skill" },
    ]);
    // Codes that do not line up with the reasons are not guessed at.
    const skewed = scripted([{ status: 200, body: answer("deny", false, { reasons: ["a", "b"], reason_codes: ["only_one"] }) }]);
    expect((await skewed.client.decide(request)).reasons).toEqual([{ message: "a" }, { message: "b" }]);
  });

  test("a deny that names an approval (used, rejected) is a DeniedError, not an ApprovalRequiredError", async () => {
    const approval = { id: "ap-1", status: "used", expires_at: "2030-01-01T00:00:00Z", url: "http://claiim.test/v1/approvals/ap-1" };
    const { client } = scripted([{ status: 200, body: answer("deny", false, { approval, reason_codes: ["approval_used"] }) }]);
    const err = await client.guard(request, () => 1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeniedError);
    expect(err).not.toBeInstanceOf(ApprovalRequiredError);
    expect(err).toMatchObject({ approval, reasons: [{ message: "why", code: "approval_used" }] });
  });

  test("503s and network errors are retried with the same Idempotency-Key; a deny is not retried", async () => {
    const { client, decisionCalls } = scripted([{ status: 503, body: { code: "chron_unavailable" } }, new TypeError("fetch failed"), { status: 200, body: answer("deny", false) }]);
    const d = await client.decide(request);
    expect(d.allowed).toBe(false);
    const keys = decisionCalls().map((c) => c.headers["Idempotency-Key"]);
    expect(keys).toHaveLength(3);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^"[0-9a-f-]{36}"$/);
    // Another call is another request: a new key.
    const second = scripted([{ status: 200, body: answer("allow", true) }, { status: 200, body: answer("allow", true) }]);
    await second.client.decide(request);
    await second.client.decide(request);
    const [k1, k2] = second.decisionCalls().map((c) => c.headers["Idempotency-Key"]);
    expect(k1).not.toBe(k2);
  });

  test("retries give up after maxAttempts with UnavailableError, honouring Retry-After", async () => {
    const { client, decisionCalls } = scripted(Array(4).fill({ status: 503, body: { code: "chron_unavailable", detail: "down" }, headers: { "Retry-After": "0" } }));
    await expect(client.decide(request)).rejects.toMatchObject({ name: "UnavailableError", code: "chron_unavailable", status: 503 });
    expect(decisionCalls()).toHaveLength(4);
    expect(UnavailableError).toBeDefined();
  });

  test("a 4xx problem is not retried and keeps its code", async () => {
    const { client, decisionCalls } = scripted([{ status: 409, body: { code: "idempotency_key_reused", detail: "used" } }]);
    await expect(client.decide(request)).rejects.toBeInstanceOf(RequestError);
    expect(decisionCalls()).toHaveLength(1);
    await expect(scripted([]).client.decide({ ...request, skill: "deploy" })).rejects.toMatchObject({ code: "validation_failed" });
  });

  test("a second 401 is an AuthenticationError, after one fresh token", async () => {
    const { client, calls } = scripted([{ status: 401, body: { code: "token_invalid" } }, { status: 401, body: { code: "credential_revoked" } }]);
    await expect(client.decide(request)).rejects.toMatchObject({ name: "AuthenticationError", code: "credential_revoked" });
    expect(calls.filter((c) => c.url.endsWith("/oauth/token"))).toHaveLength(2);
    expect(AuthenticationError).toBeDefined();
  });

  test("the options are checked: a secret or a key, not both, not neither", () => {
    expect(() => new Claiim({ url: "http://x", clientId: "c" })).toThrow(/either clientSecret or privateKey/);
    expect(() => new Claiim({ url: "http://x", clientId: "c", clientSecret: "s", privateKey: "k" })).toThrow(/either clientSecret or privateKey/);
  });
});
