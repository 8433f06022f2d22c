// What a policy may ask for instead of an allow: a human's approval of the exact request (the
// policy's answer format; approvals/ carries it out).
import { z } from "../lib/zod";
import { type Role, ROLES } from "../shared/principal";

/** Who may approve: the agent's accountable human, holders of a role in the organisation, listed humans (emails). Never an agent. */
export interface Approvers {
  accountable_human: boolean;
  roles: Role[];
  humans: string[];
}

/** What a policy asks for when it answers approval_required. */
export interface ApprovalSpec {
  approvers: Approvers;
  ttl_seconds: number | null;
}

/**
 * The policy's `approval` object, checked: a malformed one fails the evaluation (a deny), never
 * a looser approval. Emails are compared in lower case, as CLAIIM stores them.
 */
export const ApprovalSpecSchema = z
  .object({
    approvers: z
      .object({
        accountable_human: z.boolean().default(false),
        // A metrics key reads /metrics and nothing else: it answers no approval.
        roles: z.array(z.enum(ROLES.filter((r) => r !== "metrics") as [Role, ...Role[]])).max(10).default([]),
        humans: z
          .array(z.string().email().max(320).transform((e) => e.toLowerCase()))
          .max(50)
          .default([]),
      })
      .strict()
      .refine((a) => a.accountable_human || a.roles.length > 0 || a.humans.length > 0, { message: "names no approver" })
      .transform((a) => ({ ...a, roles: [...new Set(a.roles)], humans: [...new Set(a.humans)] })),
    ttl_seconds: z.number().int().min(1).nullable().default(null),
  })
  .strict();

