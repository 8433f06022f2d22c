/*
 * Rego values on the JavaScript side of the WebAssembly boundary, without loss.
 *
 * The compiled policy hands values to host builtins, and its result to CLAIIM, as text: OPA's value
 * syntax (JSON, plus set literals `{1, 2}` and `set()`, plus object keys of any type). JSON.parse
 * would turn every number into a double (integers beyond 2^53 rounded, `1.0` and `1e2` lose their
 * text) and every set into an array, so builtins would compute on something other than what the
 * policy holds. Here:
 *   - a number is a JS number only when that number prints back as the same text (String(n) ===
 *     text); any other number (large integers, `1.0`, `1e2`, long decimals) is a Num holding its
 *     exact text; builtins may also return a bigint;
 *   - an object whose keys are all strings is a plain object (null prototype, so that a key named
 *     `__proto__` is data); one with any other key is a RegoObject of entries;
 *   - a set is a RegoSet.
 * Ordering and equality follow OPA's (ast.Compare): null < boolean < number < string < array <
 * object < set; numbers by exact value; strings by code point (Go compares UTF-8 bytes).
 */

export class Num {
  constructor(readonly text: string) {}
  toJSON(): never {
    throw new Error("a Num must be written with writeJSON, not JSON.stringify");
  }
}

export class RegoSet {
  private readonly byKey = new Map<string, RegoValue>();
  constructor(items: Iterable<RegoValue> = []) {
    for (const v of items) this.add(v);
  }
  add(v: RegoValue): void {
    const k = key(v);
    if (!this.byKey.has(k)) this.byKey.set(k, v);
  }
  has(v: RegoValue): boolean {
    return this.byKey.has(key(v));
  }
  get size(): number {
    return this.byKey.size;
  }
  /** Elements in OPA's order. */
  sorted(): RegoValue[] {
    return [...this.byKey.values()].sort(compare);
  }
  values(): IterableIterator<RegoValue> {
    return this.byKey.values();
  }
}

/** An object with at least one key that is not a string. */
export class RegoObject {
  private readonly byKey = new Map<string, [RegoValue, RegoValue]>();
  constructor(entries: Iterable<[RegoValue, RegoValue]> = []) {
    for (const [k, v] of entries) this.set(k, v);
  }
  set(k: RegoValue, v: RegoValue): void {
    this.byKey.set(key(k), [k, v]);
  }
  get(k: RegoValue): RegoValue | undefined {
    return this.byKey.get(key(k))?.[1];
  }
  has(k: RegoValue): boolean {
    return this.byKey.has(key(k));
  }
  get size(): number {
    return this.byKey.size;
  }
  entries(): [RegoValue, RegoValue][] {
    return [...this.byKey.values()];
  }
}

export type PlainObject = { [key: string]: RegoValue };
export type RegoValue = null | boolean | number | bigint | Num | string | RegoValue[] | RegoSet | RegoObject | PlainObject;

export function newObject(): PlainObject {
  return Object.create(null) as PlainObject;
}

export function isNumber(v: unknown): v is number | bigint | Num {
  return typeof v === "number" || typeof v === "bigint" || v instanceof Num;
}

export function isPlainObject(v: unknown): v is PlainObject {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Num) && !(v instanceof RegoSet) && !(v instanceof RegoObject);
}

export function isObject(v: unknown): v is PlainObject | RegoObject {
  return isPlainObject(v) || v instanceof RegoObject;
}

/** Entries of either kind of object. */
export function objectEntries(o: PlainObject | RegoObject): [RegoValue, RegoValue][] {
  return o instanceof RegoObject ? o.entries() : Object.entries(o);
}

/** Builds the right kind of object for these entries. */
export function objectFrom(entries: Iterable<[RegoValue, RegoValue]>): PlainObject | RegoObject {
  const list = [...entries];
  if (list.every(([k]) => typeof k === "string")) {
    const o = newObject();
    for (const [k, v] of list) o[k as string] = v;
    return o;
  }
  return new RegoObject(list);
}

export function objectGet(o: PlainObject | RegoObject, k: RegoValue): RegoValue | undefined {
  if (o instanceof RegoObject) return o.get(k);
  return typeof k === "string" && Object.prototype.hasOwnProperty.call(o, k) ? o[k] : undefined;
}

/** OPA's type name of a value, as its errors and type_name() say it. */
export function typeName(v: RegoValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return "boolean";
  if (isNumber(v)) return "number";
  if (typeof v === "string") return "string";
  if (Array.isArray(v)) return "array";
  if (v instanceof RegoSet) return "set";
  return "object";
}

// ---- numbers ----------------------------------------------------------------------------------

const INTEGER = /^-?(0|[1-9][0-9]*)$/;
const NUMBER = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$/;

/** The value for a number's text: a JS number only when nothing is lost, else a Num. */
export function numberOf(text: string): number | Num {
  const n = Number(text);
  if (Number.isFinite(n) && String(n) === text) return n;
  return new Num(text);
}

export function numberText(v: number | bigint | Num): string {
  if (v instanceof Num) return v.text;
  if (typeof v === "bigint") return v.toString();
  if (!Number.isFinite(v)) throw new Error("number is not finite");
  return Object.is(v, -0) ? "0" : String(v);
}

/** A number as sign, significant digits without leading or trailing zeros, and a decimal exponent: value = 0.digits × 10^exp. */
interface Decimal {
  sign: -1 | 0 | 1;
  digits: string;
  exp: number;
}

function decimalOf(v: number | bigint | Num): Decimal {
  const text = numberText(v);
  const m = /^(-?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?$/.exec(text);
  if (!m) throw new Error(`not a number: ${text}`);
  const whole = m[2] ?? "";
  const frac = m[3] ?? "";
  let digits = whole + frac;
  let exp = whole.length + Number(m[4] ?? 0);
  const lead = digits.length - digits.replace(/^0+/, "").length;
  digits = digits.slice(lead);
  exp -= lead;
  digits = digits.replace(/0+$/, "");
  if (digits === "") return { sign: 0, digits: "", exp: 0 };
  return { sign: m[1] === "-" ? -1 : 1, digits, exp };
}

export function compareNumbers(a: number | bigint | Num, b: number | bigint | Num): number {
  if (typeof a === "number" && typeof b === "number") return a < b ? -1 : a > b ? 1 : 0;
  const x = decimalOf(a);
  const y = decimalOf(b);
  if (x.sign !== y.sign) return x.sign < y.sign ? -1 : 1;
  if (x.sign === 0) return 0;
  let c: number;
  if (x.exp !== y.exp) c = x.exp < y.exp ? -1 : 1;
  else {
    const len = Math.max(x.digits.length, y.digits.length);
    const dx = x.digits.padEnd(len, "0");
    const dy = y.digits.padEnd(len, "0");
    c = dx < dy ? -1 : dx > dy ? 1 : 0;
  }
  return c * x.sign;
}

/** The exact integer value of a number, or null when it is not an integer. */
export function integerOf(v: number | bigint | Num): bigint | null {
  if (typeof v === "bigint") return v;
  if (typeof v === "number") return Number.isInteger(v) ? BigInt(v) : null;
  if (INTEGER.test(v.text)) return BigInt(v.text);
  const d = decimalOf(v);
  if (d.sign === 0) return 0n;
  if (d.exp < d.digits.length) return null;
  if (d.exp > 100000) throw new Error("integer too large");
  return BigInt(d.digits.padEnd(d.exp, "0")) * BigInt(d.sign);
}

/** The nearest double of a number (as Go's big.Float → float64 would give for ordinary values). */
export function doubleOf(v: number | bigint | Num): number {
  if (typeof v === "number") return v;
  return Number(numberText(v));
}

/** A number for an exact integer: a JS number when safe, else a bigint. */
export function intValue(i: bigint): number | bigint {
  return i >= BigInt(Number.MIN_SAFE_INTEGER) && i <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(i) : i;
}

export function isNumberText(text: string): boolean {
  return NUMBER.test(text);
}

// ---- ordering and keys ----------------------------------------------------------------------------

function rank(v: RegoValue): number {
  if (v === null) return 0;
  if (typeof v === "boolean") return 1;
  if (isNumber(v)) return 2;
  if (typeof v === "string") return 3;
  if (Array.isArray(v)) return 4;
  if (v instanceof RegoSet) return 6;
  return 5;
}

/** Compares strings by code point, which is the order of their UTF-8 bytes, as Go does. */
export function compareStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // A surrogate (U+D800–DFFF) stands for a code point above U+FFFF, which sorts after U+E000–FFFF.
    const sx = x >= 0xd800 && x <= 0xdfff;
    const sy = y >= 0xd800 && y <= 0xdfff;
    if (sx !== sy) return sx ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length < 0 ? -1 : a.length > b.length ? 1 : 0;
}

export function compare(a: RegoValue, b: RegoValue): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0:
      return 0;
    case 1:
      return a === b ? 0 : a ? 1 : -1;
    case 2:
      return compareNumbers(a as number, b as number);
    case 3:
      return compareStrings(a as string, b as string);
    case 4: {
      const x = a as RegoValue[];
      const y = b as RegoValue[];
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = compare(x[i], y[i]);
        if (c !== 0) return c;
      }
      return x.length < y.length ? -1 : x.length > y.length ? 1 : 0;
    }
    case 5: {
      // OPA compares objects by their sorted keys, then by the values in that order.
      const x = objectEntries(a as PlainObject).sort((p, q) => compare(p[0], q[0]));
      const y = objectEntries(b as PlainObject).sort((p, q) => compare(p[0], q[0]));
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = compare(x[i][0], y[i][0]);
        if (c !== 0) return c;
        const d = compare(x[i][1], y[i][1]);
        if (d !== 0) return d;
      }
      return x.length < y.length ? -1 : x.length > y.length ? 1 : 0;
    }
    default: {
      const x = (a as RegoSet).sorted();
      const y = (b as RegoSet).sorted();
      for (let i = 0; i < Math.min(x.length, y.length); i++) {
        const c = compare(x[i], y[i]);
        if (c !== 0) return c;
      }
      return x.length < y.length ? -1 : x.length > y.length ? 1 : 0;
    }
  }
}

export function equal(a: RegoValue, b: RegoValue): boolean {
  return key(a) === key(b);
}

/** A text that is equal for equal values (numbers by value, sets and objects in any order). */
export function key(v: RegoValue): string {
  if (v === null) return "n";
  if (v === true) return "t";
  if (v === false) return "f";
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number" && Number.isSafeInteger(v)) return v === 0 ? "#0" : `#${v > 0 ? "+" : "-"}${String(Math.abs(v)).replace(/0+$/, "")}e${String(Math.abs(v)).length}`;
  if (isNumber(v)) {
    const d = decimalOf(v);
    return d.sign === 0 ? "#0" : `#${d.sign > 0 ? "+" : "-"}${d.digits}e${d.exp}`;
  }
  if (Array.isArray(v)) return `[${v.map(key).join(",")}]`;
  if (v instanceof RegoSet) return `<${[...v.values()].map(key).sort().join(",")}>`;
  return `{${objectEntries(v)
    .map(([k, x]) => `${key(k)}:${key(x)}`)
    .sort()
    .join(",")}}`;
}
