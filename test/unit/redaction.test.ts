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
      erased: ["/input/request/purpose", "/input/request/a~1b"],
      masked: ["/on_behalf_of/subject", "/resource", "/input/request/c~0d"],
    });
    expect((out.input as { request: Record<string, unknown> }).request).not.toHaveProperty("purpose");
    expect((content as unknown as { input: { request: { purpose: string } } }).input.request.purpose).toBe("refund for order 42");
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
