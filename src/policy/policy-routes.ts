import { z } from "../http/openapi";
import { route, type Reply, type RouteSpec } from "../http/route";
import { actorOf, type Principal } from "../identity/model";
import { NotAllowedError, NotFoundError } from "../lib/errors";

/** The policy applies to every organisation, so only a key that spans all of them may change it. */
function changer(p: Principal | null) {
  if (!p || p.orgId !== null) {
    throw new NotAllowedError("organization_scope", "the policy applies to every organisation; only a key not confined to one may change it");
  }
  return actorOf(p);
}
import type { PolicyService } from "./policy-service";
import { readPolicyArchive } from "./archive";

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
    errors: z.array(z.object({ message: z.string(), at: z.string() })),
    decisions: z.array(z.object({ version: z.number().int().nullable(), revision: z.string().nullable(), count: z.number().int() })),
  })
  .openapi("PolicyStatus", { description: "Modelled on OPA's bundle status" });

const Version = z.object({ version: z.coerce.number().int().min(1) });

export function policyRoutes(policies: PolicyService, maxBytes: number): RouteSpec[] {
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
          files: z.record(z.string().min(1).max(500), z.string().max(maxBytes)).openapi({ description: "Relative path to file text" }),
          message: z.string().min(1).max(2000),
          activate: z.boolean().default(false),
        })
        .strict(),
      responses: {
        201: {
          description: "Published (and activated when asked), with warnings such as formatting `opa fmt` would change",
          schema: PolicyVersionView.extend({ warnings: z.array(z.object({ file: z.string(), code: z.string(), message: z.string(), diff: z.string().optional() })) }),
        },
        422: { description: "A gate refused the policy: opa check (opa_errors: file, row, column, message), the set's own tests (failing_tests), or opa build" },
      },
      handle: async ({ body, principal }) => ({ status: 201, body: await policies.publish(body, changer(principal)) }),
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
      responses: { 201: { description: "Published (and activated when asked)", schema: PolicyVersionView } },
      handle: async ({ body, query, principal }) => {
        const files = await readPolicyArchive(body, { maxBytes: maxBytes * 4, maxEntries: 1000 });
        return { status: 201, body: await policies.publish({ files, message: query.message, activate: query.activate === "true" }, changer(principal)) };
      },
    }),
    route({
      method: "get",
      path: "/v1/policies",
      summary: "List published policy versions",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      responses: { 200: { description: "Versions", schema: z.object({ versions: z.array(PolicyVersionView) }) } },
      handle: async () => ({ status: 200, body: { versions: await policies.list() } }),
    }),
    route({
      method: "get",
      path: "/v1/bundles/{name}",
      summary: "The active policy as a standard OPA bundle (OPA's bundle service API), for OPA sidecars; ETag is the revision",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: z.object({ name: z.string().max(100) }),
      responses: { 200: { description: "The bundle (application/gzip)" }, 304: { description: "Not modified" }, 404: { description: "No such bundle" } },
      handle: async ({ params, req }): Promise<Reply> => {
        const bundle = params.name === "claiim" ? await policies.servedBundle() : null;
        if (!bundle) throw new NotFoundError("bundle_not_found", `no active bundle named ${params.name}`);
        const etag = `"${bundle.revision}"`;
        if (req.get("if-none-match") === etag) return { status: 304, headers: { ETag: etag } };
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
      handle: async () => ({ status: 200, body: await policies.status() }),
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
      handle: async () => ({ status: 200, body: { keys: policies.signingKeys() } }),
    }),
    route({
      method: "post",
      path: "/v1/policies/signing-keys/rotate",
      summary: "Rotate the bundle-signing key: new versions are signed by a new key; bundles signed earlier stay verifiable by their kid",
      tags: ["policy"],
      access: { roles: [] },
      body: z.object({ reason: z.string().min(1).max(1000).optional() }).strict(),
      responses: { 200: { description: "Rotated", schema: z.object({ kid: z.string(), previous: z.string().nullable() }) } },
      handle: async ({ body, principal }) => ({ status: 200, body: await policies.rotateSigningKey(changer(principal), body.reason ?? null) }),
    }),
    route({
      method: "get",
      path: "/v1/policies/{version}",
      summary: "One policy version with its source files",
      tags: ["policy"],
      access: { roles: ["policy_author", "auditor"] },
      params: Version,
      responses: { 200: { description: "The version", schema: PolicyVersionView.extend({ files: z.record(z.string(), z.string()) }) } },
      handle: async ({ params }) => ({ status: 200, body: await policies.get(params.version) }),
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
      handle: async ({ params, query }) => ({ status: 200, body: await policies.diff(params.version, query.against) }),
    }),
    route({
      method: "post",
      path: "/v1/policies/{version}/activate",
      summary: "Activate a published version (verified before it replaces the active one)",
      tags: ["policy"],
      access: { roles: ["policy_author"] },
      params: Version,
      responses: { 200: { description: "Active", schema: PolicyVersionView }, 422: { description: "The stored bundle failed verification" } },
      handle: async ({ params, principal }) => ({ status: 200, body: await policies.activate(params.version, changer(principal)) }),
    }),
  ];
}
