/*
 * Native builtins of OPA's WebAssembly library that CLAIIM replaces by its own implementation.
 */
import { functionNames, readU32, replaceBodies, sections, writeU32 } from "./wasm-binary";
import { PolicyError } from "./wasm-policy";

/**
 * Builtins that OPA's WebAssembly library implements natively but not as OPA's evaluator does, by
 * the name of the library's function and its arity: format_int fails from 2^31 up (it converts
 * through a 32-bit integer) and json.unmarshal accepts exponents that OPA refuses. Their bodies are
 * replaced, when a module is loaded, by a call to the host's implementation.
 */
const NATIVE_OVERRIDES: { builtin: string; fn: string; arity: number }[] = [
  { builtin: "format_int", fn: "opa_strings_format_int", arity: 2 },
  { builtin: "json.unmarshal", fn: "opa_json_unmarshal", arity: 1 },
  // Found by the differential test against opa eval (test/differential): the library computes
  // in exact decimals where OPA rounds through float64 or big.Float (abs, ceil, floor and round of
  // large numbers, mixed float and big integer arithmetic, division), refuses integers written 1.0
  // in bits.*, accepts what Go's base64 and JSON decoders refuse, and differs on empty inputs.
  { builtin: "abs", fn: "opa_arith_abs", arity: 1 },
  { builtin: "ceil", fn: "opa_arith_ceil", arity: 1 },
  { builtin: "floor", fn: "opa_arith_floor", arity: 1 },
  { builtin: "round", fn: "opa_arith_round", arity: 1 },
  { builtin: "plus", fn: "opa_arith_plus", arity: 2 },
  { builtin: "minus", fn: "opa_arith_minus", arity: 2 },
  { builtin: "mul", fn: "opa_arith_multiply", arity: 2 },
  { builtin: "div", fn: "opa_arith_divide", arity: 2 },
  { builtin: "rem", fn: "opa_arith_rem", arity: 2 },
  { builtin: "bits.and", fn: "opa_bits_and", arity: 2 },
  { builtin: "bits.or", fn: "opa_bits_or", arity: 2 },
  { builtin: "bits.xor", fn: "opa_bits_xor", arity: 2 },
  { builtin: "bits.negate", fn: "opa_bits_negate", arity: 1 },
  { builtin: "base64.decode", fn: "opa_base64_decode", arity: 1 },
  { builtin: "base64.is_valid", fn: "opa_base64_is_valid", arity: 1 },
  { builtin: "base64url.decode", fn: "opa_base64_url_decode", arity: 1 },
  { builtin: "json.is_valid", fn: "opa_json_is_valid", arity: 1 },
  { builtin: "object.union_n", fn: "builtin_object_union_n", arity: 1 },
  { builtin: "regex.find_all_string_submatch_n", fn: "opa_regex_find_all_string_submatch", arity: 3 },
  // Template strings print objects with their keys in insertion order; OPA prints them sorted.
  { builtin: "internal.template_string", fn: "opa_template_string", arity: 1 },
];
/** Builtin ids for the overrides, beyond any the compiler assigns. */
const OVERRIDE_ID = 0x40000000;

function sleb(value: number): number[] {
  const out: number[] = [];
  let v = value;
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function importedFunctionIndex(bytes: Uint8Array, module: string, name: string): number {
  const imports = sections(bytes).find((s) => s.id === 2);
  if (!imports) return -1;
  const count = readU32(bytes, imports.start);
  let i = count.next;
  let fn = 0;
  const text = (at: number) => {
    const n = readU32(bytes, at);
    return { s: Buffer.from(bytes.subarray(n.next, n.next + n.value)).toString("utf8"), next: n.next + n.value };
  };
  for (let k = 0; k < count.value; k++) {
    const m = text(i);
    const f = text(m.next);
    i = f.next;
    const kind = bytes[i++];
    if (kind !== 0) return -1; // OPA's modules import their functions first
    if (m.s === module && f.s === name) return fn;
    fn += 1;
    i = readU32(bytes, i).next;
  }
  return -1;
}

/**
 * The module with the native builtins in NATIVE_OVERRIDES redirected to the host: each body becomes
 * `opa_builtinN(id, 0, args…)`. Modules that do not contain them are returned as they are.
 */
export function redirectNativeBuiltins(bytes: Uint8Array): { bytes: Uint8Array; overrides: Map<number, string> } {
  const names = functionNames(bytes);
  const bodies = new Map<number, Uint8Array>();
  const overrides = new Map<number, string>();
  NATIVE_OVERRIDES.forEach((o, k) => {
    const index = names.get(o.fn);
    if (index === undefined) return;
    const host = importedFunctionIndex(bytes, "env", `opa_builtin${o.arity}`);
    if (host < 0) throw new PolicyError(`cannot redirect ${o.builtin}: the module does not import opa_builtin${o.arity}`);
    const id = OVERRIDE_ID + k;
    const code = [0x00, 0x41, ...sleb(id), 0x41, 0x00];
    for (let a = 0; a < o.arity; a++) code.push(0x20, a);
    code.push(0x10, ...writeU32(host), 0x0b);
    bodies.set(index, Uint8Array.from(code));
    overrides.set(id, o.builtin);
  });
  return bodies.size ? { bytes: replaceBodies(bytes, bodies), overrides } : { bytes, overrides };
}
