// The words every pillar speaks: names of organisations, agents and skills, skill references,
// e-mail addresses. One definition each, validated and documented by the same schema.
import { z } from "../lib/zod";

// semver.org's regular expression for a semantic version.
export const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/;

/** An organisation's slug. */
export const Slug = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,62})$/, "lowercase letters, digits and dashes, at most 63");
/** An agent's or a skill's name. */
export const Name = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "lowercase letters, digits, '.', '_' and '-', at most 64");
export const SkillRef = z
  .object({
    name: Name,
    version: z
      .string()
      .refine((v) => SEMVER.test(v), { message: "a semantic version such as 1.2.0", params: { code: "invalid_semver" } })
      .openapi({ pattern: SEMVER.source, example: "1.2.0" }),
  })
  .strict()
  .openapi("SkillRef");
/** An e-mail address as CLAIIM accepts it; the document carries the same pattern. */
export const Email = z.string().max(320).regex(z.regexes.email, "an e-mail address such as alice@acme.example");
