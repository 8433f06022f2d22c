import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { InputError } from "../lib/errors";
import type { IdentityService } from "../identity/identity-service";
import { scopeOf } from "../identity/model";
import type { ChronService } from "./chron-service";

const ChronRecordView = z
  .object({
    seq: z.number().int(),
    kind: z.enum(["decision", "event"]),
    decision_id: z.string().optional(),
    event_id: z.string().optional(),
    timestamp: z.string(),
    prev_hash: z.string(),
    hash: z.string(),
  })
  .passthrough()
  .openapi("ChronRecord", { description: "One record of the trail; see the README for every field" });

const VerifyView = z
  .object({
    valid: z.boolean(),
    checked: z.number().int(),
    head: z.object({ seq: z.number().int(), hash: z.string() }).nullable(),
    first_bad: z.object({ seq: z.number().int(), problem: z.string(), expected: z.string().optional(), found: z.string().optional() }).optional(),
  })
  .openapi("ChronVerification");

const ListQuery = z
  .object({
    kind: z.enum(["decision", "event"]).optional(),
    organization: z.string().optional(),
    agent: z.string().uuid().optional(),
    owner: z.string().uuid().optional(),
    decision: z.enum(["allow", "deny"]).optional(),
    from: z.string().datetime({ offset: true }).optional().openapi({ description: "Inclusive lower bound (RFC 3339)" }),
    to: z.string().datetime({ offset: true }).optional().openapi({ description: "Exclusive upper bound (RFC 3339)" }),
    cursor: z.string().max(200).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export function chronRoutes(chron: ChronService, identity: IdentityService): RouteSpec[] {
  return [
    route({
      method: "get",
      path: "/v1/chron/records",
      summary: "List Chron records, oldest first, with cursor paging",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      query: ListQuery,
      responses: { 200: { description: "A page of records", schema: z.object({ records: z.array(ChronRecordView), next_cursor: z.string().nullable() }) } },
      handle: async ({ query, principal }) => {
        const fromMs = query.from ? Date.parse(query.from) : undefined;
        const toMs = query.to ? Date.parse(query.to) : undefined;
        if (fromMs !== undefined && toMs !== undefined && fromMs > toMs) {
          throw new InputError("time_range_inverted", "from must not be later than to", [{ path: "from", message: "later than to" }]);
        }
        const scope = scopeOf(principal!);
        const filter = {
          kind: query.kind,
          // A credential confined to one organisation sees only that organisation's records.
          orgId: query.organization ? identity.organizationBySlug(query.organization, scope).id : (scope.orgId ?? undefined),
          agentId: query.agent,
          ownerId: query.owner,
          decision: query.decision,
          fromMs,
          toMs,
        };
        return { status: 200, body: await chron.list(filter, query.cursor, query.limit) };
      },
    }),
    route({
      method: "get",
      path: "/v1/chron/verify",
      summary: "Verify the whole chain and name the first broken record",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      responses: { 200: { description: "Verification result (valid or not)", schema: VerifyView } },
      handle: async () => ({ status: 200, body: await chron.verify() }),
    }),
  ];
}
