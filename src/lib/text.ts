// The one rule for text that comes from outside: it is well-formed Unicode (no lone UTF-16
// surrogate) and holds no NUL, and structured input is nested at most MAX_JSON_DEPTH deep.
//
// Why: a lone surrogate survives JSON and the record's hash, but each database stores it
// differently (SQLite as the bytes of a surrogate, PostgreSQL as U+FFFD), so a stored column
// would disagree with the content it was derived from; PostgreSQL refuses NUL in text outright;
// and nesting deeper than the stack allows breaks canonicalisation and every later verification.
import type { FieldError } from "./errors";

/**
 * The deepest nesting of objects and arrays accepted in any request body or stored object.
 * WARNING: canonicalisation and the offline verifier rely on it (see MAX_CANONICAL_DEPTH).
 */
export const MAX_JSON_DEPTH = 32;

/** Reported problems per input; the first ones are enough to fix a request. */
const MAX_REPORTED = 20;

export function isCleanText(s: string): boolean {
  return s.isWellFormed() && !s.includes("\u0000");
}

function why(s: string): string {
  return s.includes("\u0000") ? "contains a NUL character (U+0000)" : "is not well-formed Unicode (a lone UTF-16 surrogate)";
}

function join(path: string, key: string | number): string {
  return path ? `${path}.${key}` : String(key);
}

export interface TextProblems {
  text: FieldError[];
  /** The first place that is nested too deep, if any. */
  tooDeep: FieldError | null;
}

/**
 * Walks a parsed JSON value without recursion (so any depth is walked safely) and names every
 * string or key that breaks the text rule, and the first place nested deeper than `maxDepth`.
 */
export function textProblems(value: unknown, root = "", maxDepth = MAX_JSON_DEPTH): TextProblems {
  const text: FieldError[] = [];
  let tooDeep: FieldError | null = null;
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: root, depth: 0 }];
  while (stack.length && text.length < MAX_REPORTED) {
    const { value: v, path, depth } = stack.pop()!;
    if (typeof v === "string") {
      if (!isCleanText(v)) text.push({ path: path || "(body)", message: `text ${why(v)}` });
      continue;
    }
    // Bytes (an uploaded archive) are not text; whoever reads them checks what they hold.
    if (v === null || typeof v !== "object" || ArrayBuffer.isView(v)) continue;
    if (depth >= maxDepth) {
      tooDeep ??= { path: path || "(body)", message: `nested deeper than ${maxDepth} levels` };
      continue;
    }
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: join(path, i), depth: depth + 1 });
      continue;
    }
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i];
      if (!isCleanText(key)) text.push({ path: join(path, "(key)"), message: `a key ${why(key)}` });
      stack.push({ value: (v as Record<string, unknown>)[key], path: join(path, isCleanText(key) ? key : "(key)"), depth: depth + 1 });
    }
  }
  return { text, tooDeep };
}

/**
 * How deep a value nests (a scalar 0, `{}` 1, `[{}]` 2); stops counting past `limit`, and then
 * answers more than `limit`. Under a limit of at most 1,000 it recurses (bounded by the limit, so
 * no input can exhaust the stack, and allocation-free: canonicalize() asks this of every record);
 * without one, it walks with a stack of its own.
 */
export function jsonDepth(value: unknown, limit = Infinity): number {
  if (limit <= 1000) return depthWithin(value, limit);
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    const here = depth + 1;
    if (here > deepest) deepest = here;
    if (deepest > limit) return deepest;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, here]);
  }
  return deepest;
}

function depthWithin(v: unknown, limit: number): number {
  if (v === null || typeof v !== "object") return 0;
  // Deeper than allowed: any answer over the limit will do.
  if (limit <= 0) return 1;
  let deepest = 0;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length && deepest < limit; i++) {
      const d = depthWithin(v[i], limit - 1);
      if (d > deepest) deepest = d;
    }
  } else {
    const keys = Object.keys(v);
    for (let i = 0; i < keys.length && deepest < limit; i++) {
      const d = depthWithin((v as Record<string, unknown>)[keys[i]], limit - 1);
      if (d > deepest) deepest = d;
    }
  }
  return deepest + 1;
}
