/*
 * Arithmetic and bitwise builtins, which CLAIIM takes over from OPA's WebAssembly library (see
 * native-overrides.ts): on integers that a double holds exactly, Go's big integers and these give
 * the same; anything else (floats, larger integers, a zero divisor) is OPA's implementation.
 */
import { DELEGATE, type Builtin } from "../wasm-policy";
import { intValue, type RegoValue } from "../value";

function int(v: RegoValue): number | null {
  return typeof v === "number" && Number.isSafeInteger(v) ? v : null;
}

/** An exact integer result, as a number or a bigint, or DELEGATE for anything else. */
function exact(f: (a: bigint, b: bigint) => bigint | null): Builtin {
  return ([x, y]) => {
    const a = int(x);
    const b = int(y);
    if (a === null || b === null) return DELEGATE;
    const r = f(BigInt(a), BigInt(b));
    return r === null ? DELEGATE : intValue(r);
  };
}

function unary(f: (a: bigint) => bigint): Builtin {
  return ([x]) => {
    const a = int(x);
    return a === null ? DELEGATE : intValue(f(BigInt(a)));
  };
}

export const numberBuiltins: Record<string, Builtin> = {
  plus: exact((a, b) => a + b),
  minus: exact((a, b) => a - b),
  mul: exact((a, b) => a * b),
  // Only exact quotients: OPA divides in big.Float, whose rounding the general case would need.
  div: exact((a, b) => (b !== 0n && a % b === 0n ? a / b : null)),
  // Go's big.Int Rem truncates toward zero, as BigInt's % does.
  rem: exact((a, b) => (b !== 0n ? a % b : null)),
  abs: unary((a) => (a < 0n ? -a : a)),
  ceil: unary((a) => a),
  floor: unary((a) => a),
  round: unary((a) => a),
  "bits.and": exact((a, b) => a & b),
  "bits.or": exact((a, b) => a | b),
  "bits.xor": exact((a, b) => a ^ b),
  "bits.negate": unary((a) => ~a),
};
