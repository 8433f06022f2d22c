/*
 * String builtins that policies call on every decision, in TypeScript, for the cases where they
 * give exactly what OPA gives; any other case goes to OPA's implementation (DELEGATE).
 */
import { DELEGATE, type Builtin } from "../wasm-policy";
import { isNumber, numberText, objectEntries, RegoSet, compare, type RegoValue } from "../value";

/** Printable ASCII: what Go's strconv.Quote leaves as it is, but for `"` and `\`. */
const PLAIN = /^[\x20-\x7e]*$/;

/**
 * A value as OPA prints it in a policy (ast Value.String()): objects and sets in sorted order,
 * strings quoted as Go quotes them. Null when a string holds anything but printable ASCII, whose
 * Go quoting this does not reproduce.
 */
export function termText(v: RegoValue): string | null {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return PLAIN.test(v) ? `"${v.replace(/[\\"]/g, (c) => `\\${c}`)}"` : null;
  if (isNumber(v)) return numberText(v);
  const parts: string[] = [];
  if (Array.isArray(v)) {
    for (const x of v) {
      const t = termText(x);
      if (t === null) return null;
      parts.push(t);
    }
    return `[${parts.join(", ")}]`;
  }
  if (v instanceof RegoSet) {
    if (v.size === 0) return "set()";
    for (const x of v.sorted()) {
      const t = termText(x);
      if (t === null) return null;
      parts.push(t);
    }
    return `{${parts.join(", ")}}`;
  }
  for (const [k, x] of objectEntries(v).sort((a, b) => compare(a[0], b[0]))) {
    const kt = termText(k);
    const xt = termText(x);
    if (kt === null || xt === null) return null;
    parts.push(`${kt}: ${xt}`);
  }
  return `{${parts.join(", ")}}`;
}

/**
 * sprintf for format strings made only of %s, %v, %d and %% (no flags, width or precision), with
 * one argument per verb: strings with %s or %v, integers with %d or %v, other values with %v or
 * %s as OPA prints them. Everything else (floats, %q, %x, widths, big integers, missing or extra
 * arguments…) follows Go's fmt, which OPA's implementation gives.
 */
function sprintf(format: RegoValue, args: RegoValue): RegoValue | typeof DELEGATE {
  if (typeof format !== "string" || !Array.isArray(args)) return DELEGATE;
  let out = "";
  let next = 0;
  let last = 0;
  for (let i = format.indexOf("%"); i >= 0; i = format.indexOf("%", last)) {
    out += format.slice(last, i);
    const verb = format[i + 1];
    last = i + 2;
    if (verb === "%") {
      out += "%";
      continue;
    }
    if (verb !== "s" && verb !== "v" && verb !== "d") return DELEGATE;
    if (next >= args.length) return DELEGATE;
    const a = args[next++];
    if (typeof a === "string") {
      if (verb === "d") return DELEGATE;
      out += a;
    } else if (typeof a === "number") {
      // Integers only: Go formats a float (any number written with . or e) with %v differently.
      if (!Number.isSafeInteger(a) || verb === "s") return DELEGATE;
      out += String(a);
    } else if (a === null || typeof a === "boolean" || Array.isArray(a) || (typeof a === "object" && !isNumber(a))) {
      if (verb === "d") return DELEGATE;
      const t = termText(a);
      if (t === null) return DELEGATE;
      out += t;
    } else {
      return DELEGATE;
    }
  }
  if (next !== args.length) return DELEGATE;
  return out + format.slice(last);
}

/**
 * Template strings ($"…{x}…"): each part a string, or the set of the values of an expression;
 * strings print as they are, other values as OPA prints them. An expression with no value or
 * several (or text this does not quote as Go does) goes to OPA's implementation.
 */
function templateString(parts: RegoValue): RegoValue | typeof DELEGATE {
  if (!Array.isArray(parts)) return DELEGATE;
  let out = "";
  for (const part of parts) {
    let v = part;
    if (v instanceof RegoSet) {
      if (v.size !== 1) return DELEGATE;
      v = v.sorted()[0];
    }
    if (typeof v === "string") out += v;
    else {
      const t = termText(v);
      if (t === null) return DELEGATE;
      out += t;
    }
  }
  return out;
}

export const stringBuiltins: Record<string, Builtin> = {
  sprintf: ([format, args]) => sprintf(format, args),
  "internal.template_string": ([parts]) => templateString(parts),
};
