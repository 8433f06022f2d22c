import { z } from "zod";
import type { DecisionContent } from "./record";

/**
 * Redaction of decision records, as OPA's decision-log masking does it: each rule names a JSON
 * Pointer (RFC 6901) into the record's input or its request context, and either erases that value
 * or masks it with a placeholder. The record lists the paths it erased and masked. Hashes cover the
 * redacted record, so verification works as ever; the decision itself is made on the full input.
 */
export const RedactionRules = z
  .array(
    z
      .object({
        path: z
          .string()
          .regex(/^\/(input|purpose|resource|on_behalf_of)(\/([^~/]|~0|~1)*)*$/, "a JSON Pointer under /input, /purpose, /resource or /on_behalf_of"),
        op: z.enum(["erase", "mask"]),
        value: z.string().max(200).optional(),
      })
      .strict(),
  )
  .max(100);

export type RedactionRule = z.infer<typeof RedactionRules>[number];

export const MASK = "**REDACTED**";

function unescape(token: string): string {
  return token.replace(/~1/g, "/").replace(/~0/g, "~");
}

/**
 * WARNING: a record holds the request's purpose, resource and on_behalf_of twice: at its top level
 * and in the policy's input. A rule on either place applies to both, or the other would keep in
 * clear what the rule hides; unless another rule names the other place (or a path within or above
 * it), which then says what happens there.
 */
const MIRRORS: [string, string][] = [
  ["/purpose", "/input/request/purpose"],
  ["/resource", "/input/request/resource"],
  ["/on_behalf_of", "/input/on_behalf_of"],
];

/** The path, and the same datum's other place when it has one. */
function placesOf(path: string, named: string[]): string[] {
  const overlaps = (a: string, b: string) => a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
  for (const [top, inInput] of MIRRORS) {
    for (const [from, to] of [
      [top, inInput],
      [inInput, top],
    ]) {
      if (path === from || path.startsWith(`${from}/`)) {
        const other = to + path.slice(from.length);
        return named.some((n) => overlaps(n, other)) ? [path] : [path, other];
      }
    }
  }
  return [path];
}

/** Applies the rules to a copy of the record; returns it unchanged (same object) when no rule applies. */
export function redact(content: DecisionContent, rules: RedactionRule[]): DecisionContent {
  if (rules.length === 0) return content;
  // A JSON copy, not structuredClone: the record shares objects between its top level and its input
  // (on_behalf_of), and a copy that kept them shared would change both places for one path.
  const copy = JSON.parse(JSON.stringify(content)) as Record<string, unknown>;
  const erased: string[] = [];
  const masked: string[] = [];
  const named = rules.map((r) => r.path);
  for (const rule of rules.flatMap((r) => placesOf(r.path, named).map((path) => ({ ...r, path })))) {
    if (erased.includes(rule.path) || masked.includes(rule.path)) continue;
    const tokens = rule.path.slice(1).split("/").map(unescape);
    const key = tokens.pop()!;
    let parent: unknown = copy;
    for (const t of tokens) parent = parent && typeof parent === "object" && !Array.isArray(parent) ? (parent as Record<string, unknown>)[t] : undefined;
    if (!parent || typeof parent !== "object" || Array.isArray(parent) || !(key in parent)) continue;
    const holder = parent as Record<string, unknown>;
    if (rule.op === "erase") {
      delete holder[key];
      erased.push(rule.path);
    } else {
      holder[key] = rule.value ?? MASK;
      masked.push(rule.path);
    }
  }
  if (erased.length === 0 && masked.length === 0) return content;
  return { ...(copy as unknown as DecisionContent), ...(erased.length ? { erased } : {}), ...(masked.length ? { masked } : {}) };
}
