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

/** Applies the rules to a copy of the record; returns it unchanged (same object) when no rule applies. */
export function redact(content: DecisionContent, rules: RedactionRule[]): DecisionContent {
  if (rules.length === 0) return content;
  const copy = structuredClone(content) as unknown as Record<string, unknown>;
  const erased: string[] = [];
  const masked: string[] = [];
  for (const rule of rules) {
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
