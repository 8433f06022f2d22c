import fc from "fast-check";
import { canonicalRecord, recordHash, sameColumn, type ChronContent } from "../../src/chron/record";
import { canonicalize, CanonicalDepthError, MAX_CANONICAL_DEPTH } from "../../src/lib/canonical";
import { isCleanText, jsonDepth, MAX_JSON_DEPTH, textProblems } from "../../src/lib/text";

// Strings over every UTF-16 code unit, lone surrogates and NUL included, and full code points.
const anyString = fc.oneof(fc.string({ unit: "binary" }), fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((u) => String.fromCharCode(u)) }), fc.string({ unit: "grapheme" }));
const anyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    anyString,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(anyString, tie("value"), { maxKeys: 4 }),
  ),
})).value;

describe("the text rule", () => {
  test("clean text is exactly well-formed Unicode without NUL", () => {
    fc.assert(
      fc.property(anyString, (s) => {
        const lone = /[\ud800-\udfff]/u.test(s);
        expect(isCleanText(s)).toBe(!lone && !s.includes("\u0000"));
      }),
      { numRuns: 2000 },
    );
  });

  test("names every string and key that breaks it, wherever it is", () => {
    fc.assert(
      fc.property(anyJson, (value) => {
        const { text, tooDeep } = textProblems(value, "", 1000);
        expect(tooDeep).toBeNull();
        // Collected independently, with recursion (values here are shallow).
        let bad = 0;
        const walk = (v: unknown): void => {
          if (typeof v === "string") bad += isCleanText(v) ? 0 : 1;
          else if (Array.isArray(v)) v.forEach(walk);
          else if (v && typeof v === "object")
            for (const [k, c] of Object.entries(v)) {
              bad += isCleanText(k) ? 0 : 1;
              walk(c);
            }
        };
        walk(value);
        expect(text.length).toBe(Math.min(bad, 20));
      }),
      { numRuns: 1000 },
    );
  });

  test("walks any depth without recursion, and names the first place too deep", () => {
    let deep: unknown = "x";
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(jsonDepth(deep)).toBe(200_000);
    const { tooDeep } = textProblems({ jwk: { extra: deep } });
    expect(tooDeep?.path).toBe(`jwk.extra${".0".repeat(MAX_JSON_DEPTH - 2)}`);
    let ok: unknown = "x";
    for (let i = 0; i < MAX_JSON_DEPTH; i++) ok = [ok];
    expect(textProblems(ok).tooDeep).toBeNull();
    expect(textProblems([ok]).tooDeep).not.toBeNull();
  });

  test("under a limit, the depth is exact up to it and over it past it, as the unlimited walk counts; and 200,000 levels under a limit do not exhaust the stack", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 8 }), fc.integer({ min: 0, max: 10 }), (value, limit) => {
        const whole = jsonDepth(value);
        const bounded = jsonDepth(value, limit);
        if (whole <= limit) expect(bounded).toBe(whole);
        else expect(bounded).toBeGreaterThan(limit);
      }),
      { numRuns: 2000 },
    );
    let deep: unknown = "x";
    for (let i = 0; i < 200_000; i++) deep = { a: [deep] };
    expect(jsonDepth(deep, MAX_CANONICAL_DEPTH)).toBeGreaterThan(MAX_CANONICAL_DEPTH);
    expect(jsonDepth(deep, 1000)).toBeGreaterThan(1000);
  });

  test("canonicalisation refuses what is nested too deep instead of overflowing the stack", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(() => canonicalize(deep)).toThrow(CanonicalDepthError);
    let limit: unknown = 1;
    for (let i = 0; i < MAX_CANONICAL_DEPTH; i++) limit = [limit];
    expect(canonicalize(limit)).toBe(`${"[".repeat(MAX_CANONICAL_DEPTH)}1${"]".repeat(MAX_CANONICAL_DEPTH)}`);
  });
});

describe("sealing a record", () => {
  test("one canonicalisation gives the stored text and the hash of the chain's definition, for any content", () => {
    fc.assert(
      fc.property(fc.dictionary(anyString.filter((k) => k !== "seq" && k !== "prev_hash"), anyJson, { maxKeys: 8 }), fc.nat(), fc.string({ unit: fc.constantFrom(..."0123456789abcdef"), minLength: 64, maxLength: 64 }), (content, seq, prev) => {
        const c = content as unknown as ChronContent;
        const sealed = canonicalRecord(c, seq, prev);
        expect(sealed.text).toBe(canonicalize(c));
        expect(sealed.hash).toBe(recordHash(c, seq, prev));
      }),
      { numRuns: 1500 },
    );
  });

  test("members whose keys sort right next to prev_hash and seq are hashed in their places", () => {
    // Random keys seldom fall between, say, "sep" and "seq": these do, on every side of both.
    const near = ["", "a", "prev", "prev_has", "prev_hasg", "prev_hash0", "prev_hashes", "pz", "s", "sep", "sepz", "seq0", "seqa", "seq_", "sf", "z", "é", "\u{1F600}", "\ud800"];
    fc.assert(
      fc.property(fc.subarray(near), anyJson, fc.nat(), (keys, value, seq) => {
        const c = Object.fromEntries(keys.map((k) => [k, value])) as unknown as ChronContent;
        const prev = "ab".repeat(32);
        expect(canonicalRecord(c, seq, prev).hash).toBe(recordHash(c, seq, prev));
      }),
      { numRuns: 500 },
    );
  });

  test("a legacy column matches only the replacement a database made of its lone surrogates", () => {
    fc.assert(
      fc.property(anyString, (s) => {
        expect(sameColumn(s, s)).toBe(true);
        if (!s.isWellFormed()) {
          expect(sameColumn(s.toWellFormed(), s)).toBe(true);
          expect(sameColumn(`${s.toWellFormed()}x`, s)).toBe(false);
        } else {
          expect(sameColumn(`${s}\ufffd`, s)).toBe(false);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
