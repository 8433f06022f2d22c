import { redact, RedactionRules } from "../../src/chron/redaction";
import type { DecisionContent } from "../../src/chron/record";

const content = {
  kind: "decision",
  purpose: "refund for order 42",
  resource: "ticket/7",
  on_behalf_of: { subject: "carol@customer.example" },
  input: { request: { purpose: "refund for order 42", "a/b": 1, "c~d": 2 }, agent: { id: "a" } },
} as unknown as DecisionContent;

describe("redaction rules", () => {
  test("erase and mask by JSON Pointer, listing what they did, on a copy", () => {
    const out = redact(content, [
      { path: "/input/request/purpose", op: "erase" },
      { path: "/on_behalf_of/subject", op: "mask" },
      { path: "/resource", op: "mask", value: "ticket/*" },
      { path: "/input/request/a~1b", op: "erase" },
      { path: "/input/request/c~0d", op: "mask" },
      { path: "/input/nothing/here", op: "erase" },
    ]) as unknown as Record<string, unknown>;
    expect(out).toMatchObject({
      resource: "ticket/*",
      on_behalf_of: { subject: "**REDACTED**" },
      input: { request: { "c~d": "**REDACTED**" }, agent: { id: "a" } },
      erased: ["/input/request/purpose", "/purpose", "/input/request/a~1b"],
      masked: ["/on_behalf_of/subject", "/resource", "/input/request/c~0d"],
    });
    expect((out.input as { request: Record<string, unknown> }).request).not.toHaveProperty("purpose");
    expect((content as unknown as { input: { request: { purpose: string } } }).input.request.purpose).toBe("refund for order 42");
  });

  test("the README's rules leave nothing in clear: the top level and the policy's input hold one datum, and a rule on either hides both", () => {
    // As the decision service builds it: on_behalf_of is one object, at the top and in the input.
    const obo = { subject: "carol@customer.example" };
    const record = {
      kind: "decision",
      purpose: "refund for order 42",
      resource: "ticket/7",
      on_behalf_of: obo,
      input: { on_behalf_of: obo, request: { purpose: "refund for order 42", resource: "ticket/7" } },
    } as unknown as DecisionContent;
    const out = redact(record, [
      { path: "/input/request/purpose", op: "erase" },
      { path: "/on_behalf_of/subject", op: "mask", value: "customer" },
      { path: "/resource", op: "mask" },
    ]) as unknown as Record<string, unknown>;
    expect(out).toEqual({
      kind: "decision",
      resource: "**REDACTED**",
      on_behalf_of: { subject: "customer" },
      input: { on_behalf_of: { subject: "customer" }, request: { resource: "**REDACTED**" } },
      erased: ["/input/request/purpose", "/purpose"],
      masked: ["/on_behalf_of/subject", "/input/on_behalf_of/subject", "/resource", "/input/request/resource"],
    });
    expect(JSON.stringify(out)).not.toContain("refund");
    expect(JSON.stringify(out)).not.toContain("carol");
    // The record the decision was made on is untouched.
    expect(obo.subject).toBe("carol@customer.example");
    // A rule that names the other place says what happens there: a placeholder at the top, nothing in the input.
    const both = redact(record, [
      { path: "/purpose", op: "mask" },
      { path: "/input/request/purpose", op: "erase" },
      { path: "/input/on_behalf_of", op: "erase" },
      { path: "/on_behalf_of/subject", op: "mask" },
    ]) as unknown as { purpose: string; input: Record<string, Record<string, unknown>>; erased: string[]; masked: string[] };
    expect(both).toMatchObject({ purpose: "**REDACTED**", on_behalf_of: { subject: "**REDACTED**" }, masked: ["/purpose", "/on_behalf_of/subject"], erased: ["/input/request/purpose", "/input/on_behalf_of"] });
    expect(both.input).not.toHaveProperty("on_behalf_of");
    expect(both.input.request).not.toHaveProperty("purpose");
  });

  test("no rule, or no match, leaves the record as it was, without erased/masked", () => {
    expect(redact(content, [])).toBe(content);
    expect(redact(content, [{ path: "/input/missing", op: "erase" }])).toBe(content);
  });

  test("rules outside the input and request context, or malformed, are refused", () => {
    expect(RedactionRules.safeParse([{ path: "/decision", op: "erase" }]).success).toBe(false);
    expect(RedactionRules.safeParse([{ path: "/agent/id", op: "mask" }]).success).toBe(false);
    expect(RedactionRules.safeParse([{ path: "input/x", op: "erase" }]).success).toBe(false);
    expect(RedactionRules.safeParse([{ path: "/input/x", op: "hash" }]).success).toBe(false);
    expect(RedactionRules.safeParse([{ path: "/input/x", op: "erase" }]).success).toBe(true);
  });
});
