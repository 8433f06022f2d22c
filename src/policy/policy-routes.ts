import { z } from "../http/openapi";
import { route, type Reply, type RouteSpec } from "../http/route";
import { NotFoundError } from "../lib/errors";
import type { ReplayRunner } from "./replay";
import type { PolicyService } from "./policy-service";
import { readPolicyArchive } from "./archive";
import { actorOf, scopeOf } from "../shared/principal";

const PolicyVersionView = z
  .object({
    version: z.number().int(),
    parent: z.number().int().nullable(),
    revision: z.string(),
    digest: z.string(),
    file_sha256: z.string(),
    message: z.string(),
    created_by: z.string(),
    created_at: z.string(),
    active: z.boolean(),
  })
  .openapi("PolicyVersion");

const PolicyStatusView = z
  .object({
    name: z.string(),
    active_version: z.number().int().nullable(),
    active_revision: z.string().nullable(),
    active_digest: z.string().nullable(),
    last_successful_activation: z.string().nullable(),
    activated_by: z.string().nullable(),
    active_signed_by: z.string().nullable().openapi({ description: "kid of the bundle-signing key whose signature was verified when the active version was loaded" }),
    shadow: z
      .object({ version: z.number().int(), revision: z.string().nullable(), since: z.string(), set_by: z.string(), evaluating: z.boolean(), bounds_exceeded: z.number().int() })
      .nullable()
      .openapi({ description: "The version evaluated beside the active one; evaluating is false when it failed verification at start-up; bounds_exceeded counts its evaluations stopped at the deadline or memory limit" }),
    errors: z.array(z.object({ message: z.string(), at: z.string() })),
    decisions: z.array(z.object({ version: z.number().int().nullable(), revision: z.string().nullable(), count: z.number().int() })),
    evaluation: z
      .object({
        timeout_ms: z.number().int(),
        max_memory_mb: z.number().int(),
        workers: z.number().int(),
        evaluations: z.number().int(),
        timeouts: z.number().int(),
        memory_exceeded: z.number().int(),
        worker_restarts: z.number().int(),
        queued: z.number().int(),
      })
      .openapi({ description: "The bounds of every evaluation, and how often they were reached since start-up" }),
  })
  .openapi("PolicyStatus", { description: "Modelled on OPA's bundle status" });

const Tally = {
  evaluated: z.number().int(),
  disagreements: z.number().int(),
  allow_to_deny: z.number().int(),
  deny_to_allow: z.number().int(),
  approval_changes: z.number().int().openapi({ description: "Neither allows; one denies where the other asks for a human's approval" }),
};
const DecisionRef = {
  seq: z.number().int(),
  decision_id: z.string(),
  timestamp: z.string(),
  agent: z.object({ id: z.string(), name: z.string() }),
  action: z.string(),
  resource: z.string(),
};
const ShadowSample = z.object({
  ...DecisionRef,
  decision: z.string(),
  reasons: z.array(z.string()),
  shadow_decision: z.string(),
  shadow_reasons: z.array(z.string()),
});
const ShadowReportView = z
  .object({
    shadow_version: z.number().int(),
    from: z.string(),
    to: z.string().nullable(),
    ...Tally,
    by_action: z.array(z.object({ action: z.string(), ...Tally, samples: z.array(ShadowSample) })),
    by_agent: z.array(z.object({ agent: z.object({ id: z.string(), name: z.string() }), ...Tally, samples: z.array(ShadowSample) })),
  })
  .openapi("ShadowReport");

const ReplayChange = z.object({
  ...DecisionRef,
  recorded: z.object({ decision: z.string(), reasons: z.array(z.string()), policy_version: z.number().int().nullable() }),
  replayed: z.object({ decision: z.string(), reasons: z.array(z.string()) }),
  redacted: z.boolean(),
});
const ReplayViewSchema = z
  .object({
    id: z.string(),
    version: z.number().int(),
    revision: z.string(),
    from: z.string(),
    to: z.string(),
    organization_id: z.string().nullable(),
    requested_by: z.string(),
    state: z.enum(["running", "done", "failed"]),
    started_at: z.string(),
    finished_at: z.string().nullable(),
    error: z.string().nullable(),
    progress: z.object({ processed: z.number().int(), total: z.number().int() }),
    unchanged: z.number().int(),
    skipped: z.number().int(),
    redacted: z.number().int(),
    bounds_exceeded: z.number().int().openapi({ description: "Evaluations stopped at the deadline or the memory limit; the replay stops after CLAIIM_EVAL_TRIPS_TO_STOP of them" }),
    allow_to_deny: z.object({ count: z.number().int(), records: z.array(ReplayChange) }),
    deny_to_allow: z.object({ count: z.number().int(), records: z.array(ReplayChange) }),
    approval_changes: z.object({ count: z.number().int(), records: z.array(ReplayChange) }),
    truncated: z.boolean(),
  })
  .openapi("Replay");

const Version = z.object({ version: z.coerce.number().int().min(1) });

export function policyRoutes(policies: PolicyService, replays: ReplayRunner, maxBytes: number): RouteSpec[] {
  return [
    route({
      method: "post",
      path: "/v1/policies",
      summary: "Publish a policy set (Rego modules, tests, data); compiled to WebAssembly with the OPA CLI",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      bodyLimit: maxBytes,
      body: z
        .object({
          files: z
            .record(z.string().min(1).max(500), z.string().max(maxBytes))
            .openapi({ description: "Relative path to file text", propertyNames: { type: "string", minLength: 1, maxLength: 500 } } as object),
          message: z.string().min(1).max(2000),
          activate: z.boolean().default(false),
        })
        .strict(),
      responses: {
        201: {
          description: "Published (and activated when asked), with warnings such as formatting `opa fmt` would change",
          schema: PolicyVersionView.extend({ warnings: z.array(z.object({ file: z.string(), code: z.string(), message: z.string(), diff: z.string().optional() })) }),
        },
        409: { description: "Another version was published at the same moment (policy_version_taken)" },
        422: { description: "A gate refused the policy: opa check (opa_errors: file, row, column, message), the set's own tests (failing_tests), or opa build" },
      },
      handle: async ({ body, principal }) => ({ status: 201, body: await policies.publish(body, actorOf(principal), scopeOf(principal)) }),
    }),
    route({
      method: "post",
      path: "/v1/policies/archive",
      summary: "Publish a policy set uploaded as a gzipped tar (paths climbing out, links, devices and size bombs are refused)",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      bodyType: "gzip",
      bodyLimit: maxBytes,
      body: z.custom<Buffer>((v) => Buffer.isBuffer(v)).openapi({ type: "string", format: "binary" }),
      query: z.object({ message: z.string().min(1).max(2000), activate: z.enum(["true", "false"]).default("false") }).strict(),
      responses: {
        201: { description: "Published (and activated when asked)", schema: PolicyVersionView },
        409: { description: "Another version was published at the same moment (policy_version_taken)" },
        422: { description: "A gate refused the policy (as for POST /v1/policies)" },
      },
      handle: async ({ body, query, principal }) => {
        const files = await readPolicyArchive(body, { maxBytes: maxBytes * 4, maxEntries: 1000 });
        return { status: 201, body: await policies.publish({ files, message: query.message, activate: query.activate === "true" }, actorOf(principal), scopeOf(principal)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/policies",
      summary: "List published policy versions",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      responses: { 200: { description: "Versions", schema: z.object({ versions: z.array(PolicyVersionView) }) } },
      handle: async () => ({ status: 200, body: { versions: await policies.reads.list() } }),
    }),
    route({
      method: "get",
      path: "/v1/bundles/{name}",
      summary: "The active policy as a standard OPA bundle (OPA's bundle service API), for OPA sidecars; ETag is the revision",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: z.object({ name: z.string().max(100) }),
      responses: { 200: { description: "The bundle (application/gzip)" }, 304: { description: "Not modified" }, 404: { description: "No such bundle" } },
      handle: async ({ params, headers }): Promise<Reply> => {
        const bundle = params.name === "claiim" ? await policies.sidecar.active() : null;
        if (!bundle) throw new NotFoundError("bundle_not_found", `no active bundle named ${params.name}`);
        const etag = `"${bundle.revision}"`;
        if (headers["if-none-match"] === etag) return { status: 304, headers: { ETag: etag } };
        return { status: 200, headers: { ETag: etag, "Cache-Control": "no-cache" }, contentType: "application/gzip", body: bundle.bytes };
      },
    }),
    route({
      method: "get",
      path: "/v1/policies/status",
      summary: "Active policy revision and the last activation error",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      responses: { 200: { description: "Status", schema: PolicyStatusView } },
      handle: async ({ principal }) => ({ status: 200, body: await policies.reads.status(scopeOf(principal).orgId) }),
    }),
    route({
      method: "put",
      path: "/v1/policies/shadow",
      summary: "Shadow a published version: evaluated beside the active one on every decision, never enforced; Chron records its result beside the real one",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      body: z.object({ version: z.number().int().min(1) }).strict(),
      responses: {
        200: { description: "Shadowing", schema: z.object({ version: z.number().int(), revision: z.string(), since: z.string(), set_by: z.string() }) },
        404: { description: "No such version (policy_version_not_found)" },
        409: { description: "The version is the active one (shadow_is_active)" },
        422: { description: "The stored bundle failed verification (policy_load_failed)" },
      },
      handle: async ({ body, principal }) => ({ status: 200, body: await policies.shadows.setShadow(body.version, actorOf(principal), scopeOf(principal)) }),
    }),
    route({
      method: "delete",
      path: "/v1/policies/shadow",
      summary: "Stop shadowing",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      responses: { 204: { description: "Stopped" }, 404: { description: "Nothing is shadowed (no_shadow)" } },
      handle: async ({ principal }) => {
        await policies.shadows.stopShadow(actorOf(principal), scopeOf(principal));
        return { status: 204 };
      },
    }),
    route({
      method: "get",
      path: "/v1/policies/shadow/report",
      summary: "Where the shadow disagreed with the decisions made: counts, and samples grouped by action and by agent (the current shadow by default)",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      query: z
        .object({
          version: z.coerce.number().int().min(1).optional().openapi({ description: "An earlier shadow's version (then `from` is required)" }),
          from: z.string().datetime({ offset: true }).optional().openapi({ description: "Inclusive lower bound (RFC 3339); default: when the current shadow started" }),
          to: z.string().datetime({ offset: true }).optional().openapi({ description: "Exclusive upper bound (RFC 3339)" }),
          samples: z.coerce.number().int().min(0).max(100).default(5).openapi({ description: "Sample disagreements per group" }),
        })
        .strict(),
      responses: { 200: { description: "The report", schema: ShadowReportView }, 404: { description: "Nothing is shadowed and no version was named (no_shadow)" } },
      handle: async ({ query, principal }) => ({
        status: 200,
        body: await policies.shadows.shadowReport({
          version: query.version,
          fromMs: query.from ? Date.parse(query.from) : undefined,
          toMs: query.to ? Date.parse(query.to) : undefined,
          orgId: scopeOf(principal).orgId,
          samples: query.samples,
        }),
      }),
    }),
    route({
      method: "post",
      path: "/v1/policies/{version}/replay",
      summary: "Replay a published version against a window of recorded decisions, in the background: what would turn allow→deny and deny→allow. Changes nothing",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      params: Version,
      body: z
        .object({
          from: z.string().datetime({ offset: true }).openapi({ description: "Inclusive lower bound (RFC 3339)" }),
          to: z.string().datetime({ offset: true }).optional().openapi({ description: "Exclusive upper bound (RFC 3339); default: now" }),
          max_records: z.number().int().min(0).max(10000).default(100).openapi({ description: "Changed records kept per direction; the counts are always complete" }),
        })
        .strict(),
      responses: {
        202: { description: "Started; poll the Location for progress and the result", schema: ReplayViewSchema },
        409: { description: "Too many replays are running (replays_busy)" },
      },
      handle: async ({ params, body, principal }): Promise<Reply> => {
        const window = { fromMs: Date.parse(body.from), toMs: body.to ? Date.parse(body.to) : Date.now() };
        const job = await replays.start({ version: params.version, ...window, orgId: scopeOf(principal).orgId, maxRecords: body.max_records }, actorOf(principal));
        return { status: 202, headers: { Location: `/v1/policies/replays/${job.id}` }, body: job };
      },
    }),
    route({
      method: "get",
      path: "/v1/policies/replays",
      summary: "Replays, newest first, with their progress and results",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      responses: { 200: { description: "Replays", schema: z.object({ replays: z.array(ReplayViewSchema) }) } },
      handle: async ({ principal }) => ({ status: 200, body: { replays: await replays.list(scopeOf(principal).orgId) } }),
    }),
    route({
      method: "get",
      path: "/v1/policies/replays/{id}",
      summary: "A replay: progress while it runs; then counts and the records whose decision would change",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: z.object({ id: z.string().uuid() }),
      responses: { 200: { description: "The replay", schema: ReplayViewSchema }, 404: { description: "No such replay (replay_not_found)" } },
      handle: async ({ params, principal }) => ({ status: 200, body: await replays.find(params.id, scopeOf(principal).orgId) }),
    }),
    route({
      method: "get",
      path: "/v1/policies/signing-keys",
      summary: "Bundle-signing keys (ES256), the signing one and every earlier one; give public_key_pem to `opa run --verification-key`, or list them by kid under an OPA sidecar's `keys`",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      responses: {
        200: {
          description: "Keys",
          schema: z.object({
            keys: z.array(
              z.object({
                kid: z.string(),
                alg: z.string(),
                current: z.boolean(),
                signs_until: z.string().nullable(),
                jwk: z.record(z.string(), z.string()),
                public_key_pem: z.string(),
              }),
            ),
          }),
        },
      },
      handle: async () => ({ status: 200, body: { keys: policies.reads.signingKeys() } }),
    }),
    route({
      method: "post",
      path: "/v1/policies/signing-keys/rotate",
      summary: "Rotate the bundle-signing key: new versions are signed by a new key; bundles signed earlier stay verifiable by their kid",
      tags: ["policy"],
      access: { roles: [] },
      body: z.object({ reason: z.string().min(1).max(1000).optional() }).strict(),
      responses: {
        200: { description: "Rotated", schema: z.object({ kid: z.string(), previous: z.string().nullable() }) },
        409: { description: "The key is a file CLAIIM was given (bundle_signing_key_external)" },
      },
      handle: async ({ body, principal }) => ({ status: 200, body: await policies.rotateSigningKey(actorOf(principal), body.reason ?? null, scopeOf(principal)) }),
    }),
    route({
      method: "get",
      path: "/v1/policies/{version}",
      summary: "One policy version with its source files",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: Version,
      responses: { 200: { description: "The version", schema: PolicyVersionView.extend({ files: z.record(z.string(), z.string()) }) } },
      handle: async ({ params }) => ({ status: 200, body: await policies.reads.get(params.version) }),
    }),
    route({
      method: "get",
      path: "/v1/policies/{version}/diff",
      summary: "What a version changes: files added, removed, and unified diffs, against its parent or `against`",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: Version,
      query: z.object({ against: z.coerce.number().int().min(1).optional() }).strict(),
      responses: {
        200: {
          description: "The diff",
          schema: z.object({
            from: z.number().int(),
            to: z.number().int(),
            added: z.array(z.string()),
            removed: z.array(z.string()),
            changed: z.array(z.object({ file: z.string(), diff: z.string() })),
            unchanged: z.number().int(),
          }),
        },
      },
      handle: async ({ params, query }) => ({ status: 200, body: await policies.reads.diff(params.version, query.against) }),
    }),
    route({
      method: "post",
      path: "/v1/policies/{version}/activate",
      summary: "Activate a published version (verified before it replaces the active one)",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      params: Version,
      responses: { 200: { description: "Active", schema: PolicyVersionView }, 422: { description: "The stored bundle failed verification" } },
      handle: async ({ params, principal }) => ({ status: 200, body: await policies.activate(params.version, actorOf(principal), scopeOf(principal)) }),
    }),
  ];
}
