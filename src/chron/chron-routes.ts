import { z } from "../http/openapi";
import { seqWindow, timeWindow } from "../shared/windows";
import { route, type RouteSpec } from "../http/route";
import { NotAllowedError } from "../lib/errors";
import type { ChronRetention } from "./retention";
import type { ChronExporter } from "./export";
import type { Names } from "../shared/names";
import type { ChronService } from "./chron-service";
import type { ChronVerifier } from "./verification";
import { actorOf, scopeOf } from "../shared/principal";

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
  .openapi("ChronRecord", { description: "One record of the trail; see docs/chron.md for every field" });

const VerifyProblemView = z.object({
  seq: z.number().int(),
  problem: z.string(),
  expected: z.string().optional(),
  found: z.string().optional(),
  organization: z.literal("other").optional().openapi({ description: "The record is another organisation's: nothing of it is shown to a confined caller" }),
});

const VerifyView = z
  .object({
    valid: z.boolean(),
    checked: z.number().int().openapi({ description: "Records checked; for a caller confined to one organisation, that organisation's" }),
    head: z.object({ seq: z.number().int(), hash: z.string() }).nullable(),
    checkpoints: z.object({ checked: z.number().int(), last: z.object({ seq: z.number().int(), hash: z.string() }).nullable() }),
    first_bad: VerifyProblemView.optional(),
    problems: z.array(VerifyProblemView).openapi({ description: "Every anomaly found, first one first (at most 100)" }),
    problem_count: z.number().int(),
    scope: z.object({ organization_id: z.string() }).optional(),
    witness: z
      .object({
        heads_checked: z.number().int(),
        last: z.object({ tree_size: z.number().int(), root: z.string(), timestamp: z.string() }).nullable(),
        remote: z
          .object({ url: z.string(), acknowledged_size: z.number().int().nullable(), pending_size: z.number().int().nullable(), attempts: z.number().int(), last_error: z.string().nullable() })
          .optional(),
      })
      .optional()
      .openapi({ description: "The witness log the chain was held against, and the remote witness's delivery state" }),
  })
  .openapi("ChronVerification");

const SignedHeadView = z.object({ seq: z.number().int(), hash: z.string(), kid: z.string(), jws: z.string() }).nullable();

const ConsistencyView = z
  .object({
    first: z.number().int(),
    second: z.number().int(),
    first_root: z.string(),
    second_root: z.string(),
    proof: z.array(z.string()).openapi({ description: "RFC 9162 consistency proof: hex node hashes, bottom up" }),
    checkpoints: z.object({ first: SignedHeadView, second: SignedHeadView }).openapi({ description: "The signed tree heads at those sizes, where there are checkpoints" }),
  })
  .openapi("ChronConsistencyProof");

const ListQuery = z
  .object({
    kind: z.enum(["decision", "event"]).optional(),
    organization: z.string().optional(),
    agent: z.string().uuid().optional(),
    owner: z.string().uuid().optional(),
    decision: z.enum(["allow", "deny", "approval_required"]).optional(),
    action: z.string().min(1).max(200).optional().openapi({ description: "A decision's action, or an event's type (e.g. policy.activated)" }),
    policy_version: z.coerce.number().int().min(1).optional(),
    from: z.string().datetime({ offset: true }).optional().openapi({ description: "Inclusive lower bound (RFC 3339)" }),
    to: z.string().datetime({ offset: true }).optional().openapi({ description: "Exclusive upper bound (RFC 3339)" }),
    from_seq: z.coerce.number().int().min(1).optional(),
    to_seq: z.coerce.number().int().min(1).optional(),
    order: z.enum(["asc", "desc"]).default("asc").openapi({ description: "asc: oldest first (chain order); desc: newest first. A cursor belongs to one order" }),
    cursor: z.string().max(200).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

const EXPORT_TYPES = { ndjson: "application/x-ndjson", csv: "text/csv; charset=utf-8", json: "application/json" } as const;

export function chronRoutes(chron: ChronService, verifier: ChronVerifier, exporter: ChronExporter, retention: ChronRetention, names: Names): RouteSpec[] {
  return [
    route({
      method: "post",
      path: "/v1/chron/retention",
      summary: "Archive the records up to a signed checkpoint to a verified file, then delete them: the one way records leave Chron",
      tags: ["chron"],
      access: { roles: [] },
      body: z.object({ up_to_seq: z.number().int().min(1), reason: z.string().min(1).max(1000) }).strict(),
      responses: {
        200: { description: "Archived and pruned" },
        400: { description: "Not a checkpoint" },
        409: { description: "Already pruned, or a run in progress" },
      },
      handle: async ({ body, principal }) => {
        if (scopeOf(principal).orgId !== null) throw new NotAllowedError("organization_scope", "retention spans the whole chain; only a key not confined to one organisation may run it");
        return { status: 200, body: await retention.prune(body.up_to_seq, body.reason, actorOf(principal)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/chron/export",
      summary: "Export Chron for auditors, streamed, with a signed header an offline verifier checks: a contiguous range, or a filtered selection with Merkle inclusion proofs",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      query: z
        .object({
          format: z.enum(["ndjson", "csv", "json"]).default("ndjson"),
          from: z.string().datetime({ offset: true }).optional().openapi({ description: "Inclusive lower bound on time (RFC 3339)" }),
          to: z.string().datetime({ offset: true }).optional().openapi({ description: "Exclusive upper bound on time (RFC 3339)" }),
          from_seq: z.coerce.number().int().min(1).optional(),
          to_seq: z.coerce.number().int().min(1).optional(),
          kind: z.enum(["decision", "event"]).optional(),
          organization: z.string().optional(),
          agent: z.string().uuid().optional(),
          owner: z.string().uuid().optional(),
          action: z.string().min(1).max(200).optional(),
          decision: z.enum(["allow", "deny", "approval_required"]).optional(),
          policy_version: z.coerce.number().int().min(1).optional(),
        })
        .strict(),
      responses: { 200: { description: "Header line, records, trailer line (an error line if the stream fails midway)" } },
      handle: async ({ query, principal }) => {
        const { fromMs, toMs } = timeWindow(query.from, query.to);
        seqWindow(query.from_seq, query.to_seq);
        // A credential confined to one organisation exports that organisation's records, with proofs.
        const orgId = names.organizationFilter(scopeOf(principal), query.organization);
        const selection = { kind: query.kind, orgId, agentId: query.agent, ownerId: query.owner, action: query.action, decision: query.decision, policyVersion: query.policy_version };
        const { format: _format, ...given } = query;
        const filters = Object.fromEntries(Object.entries({ ...given, organization: orgId ? names.organizationSlug(orgId) : undefined }).filter(([, v]) => v !== undefined)) as Record<
          string,
          string | number
        >;
        const { header, body } = await exporter.prepare({ fromMs, toMs, fromSeq: query.from_seq, toSeq: query.to_seq }, selection, query.format, actorOf(principal), filters);
        const name = `chron-${header.first_seq ?? 0}-${header.last_seq ?? 0}.${query.format}`;
        return { status: 200, contentType: EXPORT_TYPES[query.format], headers: { "Content-Disposition": `attachment; filename="${name}"` }, stream: body };
      },
    }),
    route({
      method: "get",
      path: "/v1/chron/records",
      summary: "List Chron records, oldest first (or newest first with order=desc), with cursor paging",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      query: ListQuery,
      responses: { 200: { description: "A page of records", schema: z.object({ records: z.array(ChronRecordView), next_cursor: z.string().nullable() }) } },
      handle: async ({ query, principal }) => {
        const { fromMs, toMs } = timeWindow(query.from, query.to);
        seqWindow(query.from_seq, query.to_seq);
        const filter = {
          kind: query.kind,
          // A credential confined to one organisation sees only that organisation's records.
          orgId: names.organizationFilter(scopeOf(principal), query.organization),
          agentId: query.agent,
          ownerId: query.owner,
          decision: query.decision,
          action: query.action,
          policyVersion: query.policy_version,
          fromSeq: query.from_seq,
          toSeq: query.to_seq,
          fromMs,
          toMs,
        };
        return { status: 200, body: await chron.list(filter, query.cursor, query.limit, query.order) };
      },
    }),
    route({
      method: "get",
      path: "/v1/chron/summary",
      summary: "Allows and denies per day, by agent, accountable human, action and policy version",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      query: z
        .object({
          from: z.string().datetime({ offset: true }).openapi({ description: "Inclusive lower bound (RFC 3339)" }),
          to: z.string().datetime({ offset: true }).openapi({ description: "Exclusive upper bound (RFC 3339)" }),
          organization: z.string().optional(),
        })
        .strict(),
      responses: { 200: { description: "Counts per day" } },
      handle: async ({ query, principal }) => {
        const { fromMs, toMs } = timeWindow(query.from, query.to);
        const orgId = names.organizationFilter(scopeOf(principal), query.organization);
        const summary = await chron.summary({ fromMs, toMs, orgId }, { agent: (id) => names.agentName(id), human: (id) => names.humanEmail(id) });
        return { status: 200, body: { from: query.from, to: query.to, organization: orgId ? names.organizationSlug(orgId) : null, ...summary } };
      },
    }),
    route({
      method: "get",
      path: "/v1/chron/consistency",
      summary: "The RFC 9162 consistency proof between the Merkle trees of the first `first` and `second` records",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      query: z.object({ first: z.coerce.number().int().min(1), second: z.coerce.number().int().min(1) }).strict(),
      responses: {
        200: { description: "The proof, both roots, and the checkpoints at those sizes", schema: ConsistencyView },
        400: { description: "first is larger than second" },
        404: { description: "The chain is shorter than second" },
        409: { description: "Records before first were pruned, or the stored chain is broken there" },
      },
      // Hashes of subtrees only: nothing of any record, so a key confined to one organisation may ask too.
      handle: async ({ query }) => ({ status: 200, body: await verifier.consistency(query.first, query.second) }),
    }),
    route({
      method: "get",
      path: "/v1/chron/verify",
      summary: "Verify the whole chain and name the first broken record",
      tags: ["chron"],
      access: { roles: ["auditor"] },
      responses: { 200: { description: "Verification result (valid or not)", schema: VerifyView } },
      handle: async ({ principal }) => ({ status: 200, body: await verifier.verify(scopeOf(principal)) }),
    }),
  ];
}
