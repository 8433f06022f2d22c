/*
 * Arguments for the differential test of builtins (builtins.test.ts), as Rego terms: generated from
 * each builtin's declared argument types (valid values, with Unicode, empty values, large integers
 * and floats), wrong types for each argument, and hand-written cases for builtins whose arguments
 * have a syntax of their own (times, versions, networks, tokens, patterns…).
 */

export interface TypeDecl {
  type: string;
  of?: TypeDecl | TypeDecl[];
  dynamic?: TypeDecl | { key: TypeDecl; value: TypeDecl };
  static?: TypeDecl[];
}

const STRINGS = [
  `""`,
  `"a"`,
  `"héllo wörld"`,
  `"日本語のテキスト"`,
  `"😀👍🏽 emoji"`,
  `"tab\\tnew\\nline"`,
  `"ABC-def_123"`,
  `"1.2.3"`,
  `"10.0.0.0/24"`,
  `"2024-02-29T12:34:56.789Z"`,
  `"a.b.c"`,
  `"%s %d"`,
];
const NUMBERS = [`0`, `1`, `-1`, `2.5`, `-0.5`, `1e2`, `1.0`, `3`, `9007199254740993`, `18446744073709551617`, `-9223372036854775809`, `0.1`, `1.5e-7`];
const POOLS: Record<string, string[]> = {
  string: STRINGS,
  number: NUMBERS,
  boolean: [`true`, `false`],
  null: [`null`],
  array: [`[]`, `[1, 2, 3]`, `["a", "b", "a"]`, `[[1], {"a": 1}]`, `[null, true, "x", 1.5]`, `[9007199254740993, -1]`],
  object: [`{}`, `{"a": 1}`, `{"a": {"b": [1, 2]}, "c": "d"}`, `{1: "one", "x": [true]}`, `{"é": "ü", "😀": null}`],
  set: [`set()`, `{1, 2, 3}`, `{"a", "b"}`, `{[1], {"a": 1}}`],
};
const ANY = Object.values(POOLS).flat();

/** Values of a declared type, simple ones first. */
export function valuesOf(t: TypeDecl | undefined): string[] {
  if (!t) return ANY;
  switch (t.type) {
    case "any":
      if (Array.isArray(t.of)) return [...new Set(t.of.flatMap(valuesOf))];
      return ANY;
    case "array": {
      if (t.static) {
        const parts = t.static.map(valuesOf);
        return [0, 1, 2].map((i) => `[${parts.map((p) => p[(i * 3) % p.length]).join(", ")}]`);
      }
      const elems = valuesOf(t.dynamic as TypeDecl | undefined);
      return [`[]`, `[${elems[1 % elems.length]}]`, `[${elems[2 % elems.length]}, ${elems[3 % elems.length]}, ${elems[2 % elems.length]}]`];
    }
    case "set": {
      const elems = valuesOf(t.of as TypeDecl | undefined);
      return [`set()`, `{${elems[1 % elems.length]}}`, `{${elems[2 % elems.length]}, ${elems[3 % elems.length]}}`];
    }
    case "object": {
      const d = t.dynamic as { key: TypeDecl; value: TypeDecl } | undefined;
      if (!d?.key) return POOLS.object;
      const keys = valuesOf(d.key);
      const values = valuesOf(d.value);
      return [`{}`, `{${keys[1 % keys.length]}: ${values[1 % values.length]}}`, `{${keys[2 % keys.length]}: ${values[0]}, ${keys[4 % keys.length]}: ${values[2 % values.length]}}`];
    }
    default:
      return POOLS[t.type] ?? ANY;
  }
}

/** A value that is not of the declared type, to see both sides refuse it alike. */
function wrongFor(t: TypeDecl): string {
  switch (t.type) {
    case "string":
      return `42`;
    case "number":
      return `"42"`;
    case "array":
    case "object":
    case "set":
      return `"not a collection"`;
    default:
      return `null`;
  }
}

/** Generated argument lists for a builtin: combinations of valid values, then a wrong type in each position. */
export function generated(args: TypeDecl[], count = 14): string[][] {
  const pools = args.map(valuesOf);
  const out: string[][] = [];
  for (let i = 0; i < count; i++) out.push(pools.map((p, pos) => p[(i * (pos + 1) + pos * 3) % p.length]));
  args.forEach((t, pos) => out.push(pools.map((p, k) => (k === pos ? wrongFor(t) : p[0]))));
  return out;
}

/**
 * Builtins whose generated arguments could ask either side for unbounded work (ranges of
 * 10^19 numbers, shifts by 10^19 bits, every address of a /8): hand-written cases only.
 */
export const NO_GENERATED = new Set(["numbers.range", "numbers.range_step", "net.cidr_expand", "bits.lsh", "bits.rsh", "strings.render_template", "rego.parse_module", "json.marshal_with_options"]);

/**
 * Builtins left out: the decision's clock differs from `opa eval`'s by design (time.now_ns is the
 * recorded timestamp, tested end to end), and some are not callable by name in a policy.
 */
export const NOT_COMPARED: Record<string, string> = {
  "time.now_ns": "CLAIIM's clock is the decision's recorded timestamp (test/e2e/evaluation-bounds.test.ts)",
  print: "opa build removes print calls; a decision has no console",
  "internal.print": "what print becomes; not callable by name",
  "internal.test_case": "used by opa test only",
  "internal.template_string": "what template strings become; compared through template strings below",
  "rego.metadata.chain": "replaced by the compiler with the rule's annotations; compared through annotated rules below",
  "rego.metadata.rule": "replaced by the compiler with the rule's annotations; compared through annotated rules below",
  eq: "unification, compiled away",
  assign: "assignment, compiled away",
};

const NS = `1709210096789000000`;
const JWT_HS256 = `"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudCIsImlzcyI6ImNsYWlpbSIsImV4cCI6NDEwMjQ0NDgwMCwibmJmIjoxNzA5MjEwMDAwfQ.HqfX7SrkGdMR5fZCTj2cbvAqsZHhH6FMjuyV-QkiqSI"`;

/** Hand-written cases, by builtin: arguments as Rego terms. */
export const CURATED: Record<string, string[][]> = {
  sprintf: [
    [`"%s"`, `["x"]`],
    [`"%v and %d"`, `[{"b": [1, "é"], "a": set()}, 42]`],
    [`"%d"`, `[9007199254740993]`],
    // Not [1.0] as a literal: OPA's compiler may share the term of an equal literal 1 elsewhere in
    // the module, and format it as that integer; from input or data, 1.0 formats as a float in both.
    [`"%d"`, `[1.5]`],
    [`"%f %e %g %.2f %v"`, `[1e2, 0.5, 2.5, 2.675, 0.1]`],
    [`"%v"`, `[{1, "a", [2]}]`],
    [`"%v %s"`, `[[1, 2.5, "x\\ty"], "日本"]`],
    [`"%q %x %X %o %b %5d|%-5s|%05.1f"`, `["q\\"", 255, "hi", 8, 5, 3, "ab", 2.25]`],
    [`"%d %d"`, `[1]`],
    [`"%s"`, `["a", "b"]`],
    [`"100%% %s"`, `["sure"]`],
    [`"%z"`, `[1]`],
    [`"%v"`, `[null]`],
    [`"%v %v"`, `[true, -0.0]`],
    [`"%s"`, `["€\\u0000\\u007f"]`],
    [`"%d"`, `[18446744073709551616]`],
  ],
  format_int: [[`2147483648`, `16`], [`-18446744073709551617`, `2`], [`255.9`, `10`], [`10`, `7`], [`0`, `8`]],
  "numbers.range": [[`1`, `5`], [`5`, `1`], [`9007199254740990`, `9007199254740994`], [`1.5`, `3`], [`-2`, `-2`]],
  "numbers.range_step": [[`1`, `10`, `3`], [`10`, `1`, `4`], [`1`, `5`, `0`], [`1`, `5`, `-1`], [`0`, `1`, `0.5`]],
  "net.cidr_expand": [[`"192.168.1.0/30"`], [`"2001:db8::/126"`], [`"10.0.0.1"`], [`"not a cidr"`]],
  "bits.lsh": [[`1`, `64`], [`-3`, `2`], [`9007199254740993`, `3`], [`1`, `-1`], [`1.5`, `1`]],
  "bits.rsh": [[`18446744073709551616`, `3`], [`-9`, `1`], [`1`, `100`]],
  "time.parse_rfc3339_ns": [[`"2024-02-29T12:34:56.789Z"`], [`"2024-02-29T12:34:56+05:30"`], [`"1969-12-31T23:59:59Z"`], [`"2024-13-01T00:00:00Z"`], [`"yesterday"`]],
  "time.date": [[NS], [`[${NS}, "America/New_York"]`], [`[${NS}, "Asia/Kolkata"]`], [`[${NS}, "Local"]`], [`[${NS}, "Nowhere/Else"]`], [`-1`]],
  "time.clock": [[NS], [`[${NS}, "Europe/Paris"]`], [`[${NS}, ""]`]],
  "time.weekday": [[NS], [`[${NS}, "Pacific/Auckland"]`], [`0`]],
  "time.add_date": [[NS, `0`, `1`, `1`], [NS, `-1`, `0`, `0`], [`0`, `10000`, `0`, `0`]],
  "time.diff": [[NS, `0`], [`[${NS}, "UTC"]`, `[0, "Asia/Tokyo"]`]],
  "time.format": [[NS], [`[${NS}, "Europe/Berlin"]`], [`[${NS}, "UTC", "2006-01-02 15:04"]`], [`[${NS}, "UTC", "RFC822"]`]],
  "time.parse_ns": [[`"2006-01-02"`, `"2024-02-29"`], [`"RFC3339"`, `"2024-02-29T12:00:00Z"`], [`"15:04"`, `"25:00"`]],
  "time.parse_duration_ns": [[`"1h30m"`], [`"1.5s"`], [`"-2ms"`], [`"3d"`], [`""`]],
  "semver.is_valid": [[`"1.2.3"`], [`"v1.2.3"`], [`"1.2"`], [`"1.2.3-alpha.1+build.5"`], [`"01.2.3"`], [`"1.2.3-01"`], [`1`]],
  "semver.compare": [
    [`"1.2.3"`, `"1.2.4"`],
    [`"1.0.0-alpha"`, `"1.0.0"`],
    [`"1.0.0-alpha.1"`, `"1.0.0-alpha.beta"`],
    [`"1.0.0+build"`, `"1.0.0"`],
    [`"2.0.0"`, `"10.0.0"`],
    [`"1.2"`, `"1.2.0"`],
  ],
  "net.cidr_contains_matches": [
    [`["10.0.0.0/8", "192.168.0.0/16"]`, `"10.1.2.3"`],
    [`{"a": "10.0.0.0/8", "b": ["192.168.0.0/16", "x"]}`, `{"10.1.1.1", "192.168.3.4"}`],
    [`"2001:db8::/32"`, `["2001:db8::1", "::1"]`],
  ],
  "net.cidr_merge": [[`["10.0.0.0/25", "10.0.0.128/25", "192.168.1.1"]`], [`{"2001:db8::/33", "2001:db8:8000::/33"}`], [`["bad"]`]],
  "net.cidr_is_valid": [[`"10.0.0.0/8"`], [`"10.0.0.0/33"`], [`"::/0"`], [`"10.0.0.1"`]],
  "net.cidr_contains": [[`"10.0.0.0/8"`, `"10.0.0.0/9"`], [`"10.0.0.0/8"`, `"11.0.0.1"`], [`"::/0"`, `"10.0.0.1"`]],
  "net.cidr_intersects": [[`"10.0.0.0/8"`, `"10.1.0.0/16"`], [`"10.0.0.0/8"`, `"2001::/16"`]],
  "regex.replace": [[`"héllo wörld"`, `"ö"`, `"o"`], [`"aaa"`, `"a*?"`, `"b"`], [`"abc"`, `"(b)"`, `"[$1]"`], [`"x"`, `"("`, `"y"`]],
  "regex.split": [[`"a,b;;c"`, `"[,;]"`], [`"日本語"`, `""`], [`"abc"`, `"(?P<x>b)"`]],
  "regex.find_n": [[`"a.b"`, `"a1b a2b a3b"`, `2`], [`"\\\\d+"`, `"10 20 30"`, `-1`], [`"é"`, `"ééé"`, `0`]],
  "regex.template_match": [[`"urn:foo:{.*}"`, `"urn:foo:bar:baz"`, `"{"`, `"}"`], [`"x{[0-9]+}"`, `"xab"`, `"{"`, `"}"`]],
  "regex.globs_match": [[`"a.a.[0-9]+z"`, `".b.b2359825792*594823z"`], [`"[a-z]+"`, `"[0-9]+"`]],
  "regex.match": [[`"^[a-z]+$"`, `"héllo"`], [`"(?i)abc"`, `"ABC"`], [`"\\\\p{Han}"`, `"日"`], [`"a{2,}"`, `"aaa"`]],
  "glob.match": [[`"*.example.com"`, `["."]`, `"api.example.com"`], [`"**.com"`, `null`, `"a.b.com"`], [`"{a,b}*"`, `[]`, `"bc"`], [`"[!a]x"`, `["/"]`, `"bx"`]],
  "strings.render_template": [[`"{{.name}} has {{len .items}} items"`, `{"name": "bot", "items": [1, 2]}`], [`"{{.missing}}"`, `{}`], [`"{{"`, `{}`]],
  "rego.parse_module": [[`"x.rego"`, `"package a.b\\n\\nallow if input.x == 1\\n"`], [`"x.rego"`, `"package"`]],
  "json.marshal_with_options": [[`{"b": [1, 2], "a": "é"}`, `{"pretty": true, "indent": "  ", "prefix": "> "}`], [`[1, {"x": null}]`, `{}`], [`1`, `{"pretty": false}`]],
  "json.patch": [
    [`{"a": {"b": 1}}`, `[{"op": "add", "path": "/a/c", "value": 2}, {"op": "remove", "path": "/a/b"}]`],
    [`{"a": [1, 2]}`, `[{"op": "replace", "path": "/a/0", "value": "x"}, {"op": "move", "from": "/a/1", "path": "/b"}]`],
    [`{"a": 1}`, `[{"op": "test", "path": "/a", "value": 2}]`],
    [`{"a": 1}`, `[{"op": "add", "path": "a", "value": 2}]`],
  ],
  "json.match_schema": [
    [`{"id": "x"}`, `{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id", "name"]}`],
    [`{"id": 5, "name": "n"}`, `{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id", "name"]}`],
    [`[1, "a"]`, `"{\\"type\\": \\"array\\", \\"items\\": {\\"type\\": \\"number\\"}}"`],
  ],
  "json.verify_schema": [[`{"type": "string"}`], [`{"type": "nope"}`], [`"{\\"type\\": 1}"`]],
  "units.parse": [[`"10K"`], [`"1.5Gi"`], [`"100m"`], [`"1e3"`], [`"K"`], [`"12 mb"`]],
  "units.parse_bytes": [[`"10KB"`], [`"1.5GiB"`], [`"0"`], [`"-1M"`], [`"ten"`]],
  "urlquery.encode": [[`"a b&c=d/é"`]],
  "urlquery.decode": [[`"a+b%26c%3Dd%2F%C3%A9"`], [`"%zz"`]],
  "urlquery.encode_object": [[`{"b": ["2", "1"], "a": "x y", "c": {"z", "é"}}`]],
  "urlquery.decode_object": [[`"a=1&b=2&a=3&c"`], [`"%"`]],
  "uuid.parse": [[`"6ba7b810-9dad-11d1-80b4-00c04fd430c8"`], [`"00000000-0000-0000-0000-000000000000"`], [`"not-a-uuid"`]],
  "hex.encode": [[`"é😀"`]],
  "hex.decode": [[`"c3a9"`], [`"zz"`], [`"abc"`]],
  "crypto.sha256": [[`"é😀"`], [`""`]],
  "crypto.hmac.sha256": [[`"message é"`, `"key"`]],
  "crypto.hmac.equal": [[`"abc"`, `"abc"`], [`"abc"`, `"abd"`]],
  "io.jwt.decode": [[JWT_HS256], [`"a.b.c"`], [`"not a token"`]],
  "io.jwt.verify_hs256": [[JWT_HS256, `"secret"`], [JWT_HS256, `"wrong"`]],
  "io.jwt.decode_verify": [
    [JWT_HS256, `{"secret": "secret", "iss": "claiim", "time": 1800000000000000000}`],
    [JWT_HS256, `{"secret": "secret", "iss": "other"}`],
    [JWT_HS256, `{"secret": "secret", "time": 1600000000000000000}`],
  ],
  "io.jwt.encode_sign": [[`{"alg": "HS256", "typ": "JWT"}`, `{"sub": "agent", "n": 9007199254740993}`, `{"kty": "oct", "k": "c2VjcmV0"}`]],
  "io.jwt.encode_sign_raw": [[`"{\\"alg\\":\\"HS256\\"}"`, `"{\\"sub\\":\\"x\\"}"`, `"{\\"kty\\":\\"oct\\",\\"k\\":\\"c2VjcmV0\\"}"`]],
  "object.subset": [[`{"a": {"b": 1, "c": 2}}`, `{"a": {"b": 1}}`], [`[1, 2, 3]`, `[2, 3]`], [`{1, 2}`, `{3}`]],
  "object.union_n": [[`[{"a": {"b": 1}}, {"a": {"c": 2}}, {"a": 3}]`], [`[]`]],
  "object.keys": [[`{"b": 1, "a": 2, 3: 4}`]],
  "yaml.unmarshal": [[`"a: 1\\n---\\nb: 2\\n"`], [`"x: [1, 2\\n"`], [`"n: 9007199254740993\\nf: 1.0\\n"`]],
  "yaml.is_valid": [[`"a: 1"`], [`"a: ["`], [`1`]],
  "yaml.marshal": [[`{"b": [1, 2.5, "é"], "a": null}`]],
  "json.unmarshal": [[`"{\\"a\\": 1e400}"`], [`"[9007199254740993, 1.0]"`], [`"{\\"a\\": 1e2147483648}"`]],
  "graphql.is_valid": [[`"{ agent { name } }"`, `"type Query { agent: Agent } type Agent { name: String }"`], [`"{ nope }"`, `"type Query { a: Int }"`]],
  "graphql.parse_query": [[`"query Q($id: ID!) { agent(id: $id) { name } }"`]],
  "providers.aws.sign_req": [
    [
      `{"method": "GET", "url": "https://example.com/path?b=2&a=1", "headers": {"X-Custom": "v"}}`,
      `{"aws_access_key": "AKIDEXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "aws_service": "s3", "aws_region": "us-east-1"}`,
      NS,
    ],
  ],
  "strings.any_prefix_match": [[`["héllo", "world"]`, `"hé"`], [`{"a"}`, `["b", "a"]`]],
  "strings.count": [[`"cheese"`, `"e"`], [`"日本日本"`, `"日本"`], [`"aaa"`, `""`]],
  "strings.split_n": [[`"a,b,c"`, `","`, `2`], [`"a,b"`, `","`, `-1`]],
  indexof_n: [[`"dogs and cats and dogs"`, `"dogs"`], [`"日本日本"`, `"本"`]],
  substring: [[`"日本語テキスト"`, `1`, `3`], [`"abc"`, `5`, `1`], [`"abc"`, `1`, `-1`]],
  "array.flatten": [[`[1, [2, [3]], []]`]],
  to_number: [[`"1e2"`], [`"9007199254740993"`], [`" 1"`], [`true`], [`null`], [`"0x10"`]],
  round: [[`2.5`], [`-2.5`], [`9007199254740993`]],
  plus: [[`9007199254740993`, `1`], [`0.1`, `0.2`], [`18446744073709551616`, `18446744073709551616`]],
  mul: [[`9007199254740993`, `9007199254740993`], [`1.5`, `2`]],
  div: [[`1`, `3`], [`1`, `0`], [`18446744073709551616`, `2`]],
  rem: [[`7`, `-3`], [`18446744073709551617`, `18446744073709551616`], [`1.5`, `1`]],
  sum: [[`[9007199254740993, 1]`], [`{0.1, 0.2}`]],
  product: [[`[9007199254740993, 3]`]],
  abs: [[`-9007199254740993`]],
};
