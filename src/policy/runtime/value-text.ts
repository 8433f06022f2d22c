/*
 * Rego values as text: OPA's value syntax (JSON, set literals, `set()`, keys of any type) parsed
 * without loss, and values written back as OPA's value syntax or as Go's encoding/json writes them.
 * The values themselves, their numbers and their order are in value.ts.
 */
import { Num, RegoObject, RegoSet, type RegoValue, compareStrings, isNumber, newObject, numberOf, numberText, objectEntries } from "./value";

/** Parses OPA's value syntax (JSON, set literals, `set()`, keys of any type). */
export function parseValue(text: string): RegoValue {
  const p = new Parser(text);
  p.ws();
  const v = p.value();
  p.ws();
  if (p.i !== text.length) p.fail("trailing characters");
  return v;
}

class Parser {
  i = 0;
  constructor(private readonly s: string) {}

  fail(why: string): never {
    throw new SyntaxError(`invalid value at offset ${this.i}: ${why}`);
  }

  ws(): void {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  value(): RegoValue {
    const s = this.s;
    const c = s[this.i];
    switch (c) {
      case "{":
        return this.braces();
      case "[": {
        this.i++;
        const arr: RegoValue[] = [];
        this.ws();
        if (s[this.i] === "]") {
          this.i++;
          return arr;
        }
        for (;;) {
          this.ws();
          arr.push(this.value());
          this.ws();
          if (s[this.i] === ",") this.i++;
          else if (s[this.i] === "]") {
            this.i++;
            return arr;
          } else this.fail("expected , or ]");
        }
      }
      case '"':
        return this.string();
      case "n":
        return this.word("null", null);
      case "t":
        return this.word("true", true);
      case "f":
        return this.word("false", false);
      case "s":
        this.word("set()", null);
        return new RegoSet();
      default: {
        // OPA keeps a number's text as the policy wrote it, so Rego's forms (`.5`, `007`) occur too.
        const m = /-?[0-9]*(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
        m.lastIndex = this.i;
        const r = m.exec(s);
        if (!r || !/[0-9]/.test(r[0])) this.fail("unexpected character");
        this.i += r[0].length;
        return numberOf(r[0]);
      }
    }
  }

  private word<T>(w: string, v: T): T {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return v;
    }
    return this.fail(`expected ${w}`);
  }

  private braces(): RegoValue {
    const s = this.s;
    this.i++;
    this.ws();
    if (s[this.i] === "}") {
      this.i++;
      return newObject();
    }
    const first = this.value();
    this.ws();
    if (s[this.i] === ":") {
      const entries: [RegoValue, RegoValue][] = [];
      let k = first;
      for (;;) {
        this.i++; // ':'
        this.ws();
        entries.push([k, this.value()]);
        this.ws();
        if (s[this.i] === "}") {
          this.i++;
          break;
        }
        if (s[this.i] !== ",") this.fail("expected , or }");
        this.i++;
        this.ws();
        k = this.value();
        this.ws();
        if (s[this.i] !== ":") this.fail("expected :");
      }
      if (entries.every(([key]) => typeof key === "string")) {
        const o = newObject();
        for (const [key, v] of entries) o[key as string] = v;
        return o;
      }
      return new RegoObject(entries);
    }
    const set = new RegoSet([first]);
    for (;;) {
      if (s[this.i] === "}") {
        this.i++;
        return set;
      }
      if (s[this.i] !== ",") this.fail("expected , or }");
      this.i++;
      this.ws();
      set.add(this.value());
      this.ws();
    }
  }

  private string(): string {
    const s = this.s;
    let i = this.i + 1;
    let out = "";
    let start = i;
    for (;;) {
      if (i >= s.length) this.fail("unterminated string");
      const c = s.charCodeAt(i);
      if (c === 0x22) break;
      if (c === 0x5c) {
        out += s.slice(start, i);
        const e = s[i + 1];
        i += 2;
        switch (e) {
          case '"':
            out += '"';
            break;
          case "\\":
            out += "\\";
            break;
          case "/":
            out += "/";
            break;
          case "b":
            out += "\b";
            break;
          case "f":
            out += "\f";
            break;
          case "n":
            out += "\n";
            break;
          case "r":
            out += "\r";
            break;
          case "t":
            out += "\t";
            break;
          case "u": {
            const hex = s.slice(i, i + 4);
            if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("bad \\u escape");
            out += String.fromCharCode(parseInt(hex, 16));
            i += 4;
            break;
          }
          default:
            this.fail("bad escape");
        }
        start = i;
        continue;
      }
      i++;
    }
    out += s.slice(start, i);
    this.i = i + 1;
    return out;
  }
}

/** A JSON string as Go's encoding/json writes it (HTML characters and U+2028/2029 escaped). */
export function goJSONString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

function stringText(s: string): string {
  return JSON.stringify(s);
}

/** OPA's value syntax, for handing a value to the policy (opa_value_parse reads it). */
export function writeValue(v: RegoValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return stringText(v);
  if (isNumber(v)) return numberText(v);
  if (Array.isArray(v)) return `[${v.map(writeValue).join(",")}]`;
  if (v instanceof RegoSet) return v.size === 0 ? "set()" : `{${[...v.values()].map(writeValue).join(",")}}`;
  const parts = objectEntries(v).map(([k, x]) => `${writeValue(k)}:${writeValue(x)}`);
  return `{${parts.join(",")}}`;
}

/**
 * The JSON that OPA gives for a value (ast.JSON): sets as arrays in OPA's order, and a key that is
 * not a string as the JSON text of that key, as Go's encoder writes it.
 */
export function toJSON(v: RegoValue): RegoValue {
  if (v === null || typeof v !== "object") return v;
  if (v instanceof Num) return v;
  if (Array.isArray(v)) return v.map(toJSON);
  if (v instanceof RegoSet) return v.sorted().map(toJSON);
  const o = newObject();
  for (const [k, x] of objectEntries(v)) o[typeof k === "string" ? k : goJSON(toJSON(k))] = toJSON(x);
  return o;
}

/** JSON text of a JSON value (after toJSON), numbers exact, object keys sorted as Go writes maps. */
export function goJSON(v: RegoValue): string {
  if (v === null) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return goJSONString(v);
  if (isNumber(v)) return numberText(v);
  if (Array.isArray(v)) return `[${v.map(goJSON).join(",")}]`;
  if (v instanceof RegoSet) return goJSON(toJSON(v));
  if (v instanceof RegoObject) return goJSON(toJSON(v));
  const keys = Object.keys(v).sort((a, b) => compareStrings(a, b));
  return `{${keys.map((k) => `${goJSONString(k)}:${goJSON(v[k])}`).join(",")}}`;
}

/** JSON text with exact numbers (for inputs and data handed to the policy). */
export function writeJSON(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return stringText(v);
  if (typeof v === "number" || typeof v === "bigint" || v instanceof Num) return numberText(v);
  if (Array.isArray(v)) return `[${v.map(writeJSON).join(",")}]`;
  if (v instanceof RegoSet || v instanceof RegoObject) return writeJSON(toJSON(v));
  if (typeof (v as { toJSON?: unknown }).toJSON === "function" && !(v instanceof Num)) return writeJSON((v as { toJSON(): unknown }).toJSON());
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .map((k) => `${stringText(k)}:${writeJSON(o[k])}`)
    .join(",")}}`;
}
