import { IdempotencyIndex, parseIdempotencyKey, type RequestView } from "../../src/decisions/idempotency";
import { seal, type DecisionContent } from "../../src/chron/record";
import type { DecisionResponse } from "../../src/decisions/model";
import { decisionContent } from "../support/decision-content";

const view: RequestView = { action: "deploy", resource: "staging", purpose: "release", skill: { name: "deploy", version: "1.2.0" }, on_behalf_of: null };

function answer(id: string): DecisionResponse {
  return { decision_id: id, decision: "allow", allow: true, reasons: ["ok"], reason_codes: ["policy_reason"], policy: { version: 1, revision: "1-sha256:x", digest: "sha256:x" }, timestamp: new Date().toISOString(), chron: { seq: 1, hash: "h" } };
}

function counter() {
  let n = 0;
  const decide = async () => answer(`d-${++n}`);
  return { decide, calls: () => n };
}

function recorded(over: Partial<DecisionContent>, tsMs: number): DecisionContent {
  return decisionContent(1, { decision_id: "rec-1", timestamp: new Date(tsMs).toISOString(), organization: { id: "o", slug: "acme" }, accountable_human: null, requested_by: { credential_id: "c" }, decision: "deny", reasons: ["no"], bundles: {}, input: {}, idempotency_key: "k-1", ...over });
}

describe("IdempotencyIndex", () => {
  test("the same key and request get the first answer again; the decision runs once", async () => {
    const index = new IdempotencyIndex();
    const c = counter();
    const first = await index.run("a-1", "k", view, c.decide);
    const again = await index.run("a-1", "k", view, c.decide);
    expect(first).toEqual({ response: expect.objectContaining({ decision_id: "d-1" }), replayed: false });
    expect(again).toEqual({ response: first.response, replayed: true });
    expect(c.calls()).toBe(1);
  });

  test("concurrent duplicates wait for the one decision in flight", async () => {
    const index = new IdempotencyIndex();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const decide = async () => {
      calls += 1;
      await gate;
      return answer("only");
    };
    const runs = Array.from({ length: 20 }, () => index.run("a-1", "k", view, decide));
    release();
    const results = await Promise.all(runs);
    expect(calls).toBe(1);
    expect(new Set(results.map((r) => r.response.decision_id))).toEqual(new Set(["only"]));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
  });

  test("the same key with any other field, or for another user, is a conflict", async () => {
    const index = new IdempotencyIndex();
    const c = counter();
    await index.run("a-1", "k", view, c.decide);
    for (const other of [
      { ...view, action: "undeploy" },
      { ...view, resource: "production" },
      { ...view, purpose: "other" },
      { ...view, skill: { name: "deploy", version: "1.2.1" } },
      { ...view, on_behalf_of: "carol@example.com" },
    ]) {
      await expect(index.run("a-1", "k", other, c.decide)).rejects.toMatchObject({ status: 409, code: "idempotency_key_reused" });
    }
    expect(c.calls()).toBe(1);
  });

  test("keys are per agent: another agent's key never returns this agent's answer", async () => {
    const index = new IdempotencyIndex();
    const c = counter();
    await index.run("a-1", "k", view, c.decide);
    const other = await index.run("a-2", "k", view, c.decide);
    expect(other).toMatchObject({ response: { decision_id: "d-2" }, replayed: false });
  });

  test("a decision that fails releases its key; waiting duplicates get the same failure", async () => {
    const index = new IdempotencyIndex();
    const failing = async () => {
      await new Promise((r) => setImmediate(r));
      throw new Error("chron down");
    };
    const [a, b] = [index.run("a-1", "k", view, failing), index.run("a-1", "k", view, failing)];
    await expect(a).rejects.toThrow("chron down");
    await expect(b).rejects.toThrow("chron down");
    const c = counter();
    expect(await index.run("a-1", "k", view, c.decide)).toMatchObject({ replayed: false, response: { decision_id: "d-1" } });
  });

  test("keys expire after the TTL, and the oldest go first beyond the limit", async () => {
    let now = 1_000_000;
    const index = new IdempotencyIndex({ ttlMs: 1000, maxKeys: 3 }, () => now);
    const c = counter();
    await index.run("a-1", "k", view, c.decide);
    now += 1001;
    expect((await index.run("a-1", "k", view, c.decide)).replayed).toBe(false);
    for (const k of ["k2", "k3", "k4"]) await index.run("a-1", k, view, c.decide);
    expect(index.size).toBe(3);
    expect((await index.run("a-1", "k", view, c.decide)).replayed).toBe(false);
  });

  test("keys reloaded from Chron replay the recorded answer, and bind the fields redaction left intact", async () => {
    const now = Date.now();
    const index = new IdempotencyIndex({ ttlMs: 60_000, maxKeys: 10 }, () => now);
    const rows = seal(
      [
        recorded({}, now - 1000),
        recorded({ decision_id: "rec-2", idempotency_key: "k-2", purpose: undefined as unknown as string, erased: ["/purpose"] }, now - 500),
        recorded({ decision_id: "old", idempotency_key: "k-old" }, now - 120_000),
        recorded({ decision_id: "nokey", idempotency_key: undefined }, now - 100),
      ],
      null,
    );
    expect(index.load(rows)).toBe(2);
    const c = counter();
    const first = await index.run("a-1", "k-1", view, c.decide);
    expect(first).toEqual({ replayed: true, response: { decision_id: "rec-1", decision: "deny", allow: false, reasons: ["no"], reason_codes: [], policy: { version: 1, revision: "1-sha256:x", digest: "sha256:x" }, timestamp: new Date(now - 1000).toISOString(), chron: { seq: 1, hash: rows[0].hash } } });
    await expect(index.run("a-1", "k-1", { ...view, purpose: "changed" }, c.decide)).rejects.toMatchObject({ code: "idempotency_key_reused" });
    // The purpose was erased from the record: it cannot be compared, the rest still binds the key.
    expect(await index.run("a-1", "k-2", { ...view, purpose: "anything" }, c.decide)).toMatchObject({ replayed: true, response: { decision_id: "rec-2" } });
    await expect(index.run("a-1", "k-2", { ...view, resource: "production" }, c.decide)).rejects.toMatchObject({ code: "idempotency_key_reused" });
    expect((await index.run("a-1", "k-old", view, c.decide)).replayed).toBe(false);
    expect(c.calls()).toBe(1);
  });
});

describe("parseIdempotencyKey", () => {
  test("bare and quoted (RFC 8941 string) forms name the same key", () => {
    expect(parseIdempotencyKey(undefined)).toBeNull();
    expect(parseIdempotencyKey("8e03978e-40d5-43e8-bc93-6894a57f9324")).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect(parseIdempotencyKey('"8e03978e-40d5-43e8-bc93-6894a57f9324"')).toBe("8e03978e-40d5-43e8-bc93-6894a57f9324");
    expect(parseIdempotencyKey('"a\\"b"')).toBe('a"b');
  });

  test.each([[""], ['""'], ["a b"], ['"a", "b"'], ["x".repeat(256)], ["clé"], ["a\u0000b"], ['a"b'], ['"a\\x"']])("%j is refused with idempotency_key_invalid", (value) => {
    expect(() => parseIdempotencyKey(value)).toThrow(expect.objectContaining({ status: 400, code: "idempotency_key_invalid" }));
  });
});
