import { once } from "node:events";
import express, { type Request, type Response } from "express";
import type { ZodType } from "zod";
import { z, Problem, type OpenAPIRegistry } from "./openapi";
import { InputError, NotAllowedError, type FieldError } from "../lib/errors";
import { runInRequest } from "../lib/logger";
import { rolesOf, type Principal, type Role } from "../identity/model";

/**
 * Who may call a route: anyone, API keys and humans with one of these roles (admin always may), or
 * agents. A roles route may also admit every signed-in human (`humans`) or every agent (`agents`),
 * when the service itself decides what each may do (approvals: the accountable human needs no role).
 */
export type Access = { public: true } | { roles: Role[]; humans?: true; agents?: true } | { agent: true };

export interface Reply {
  status: number;
  body?: unknown;
  /** A body sent piece by piece as it is produced, with back-pressure. */
  stream?: AsyncIterable<string>;
  headers?: Record<string, string>;
  contentType?: string;
}

export interface Context<B, Q, P> {
  body: B;
  query: Q;
  params: P;
  principal: Principal | null;
  req: Request;
  res: Response;
}

export interface RouteSpec<B = unknown, Q = unknown, P = unknown> {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** OpenAPI form, e.g. /v1/agents/{id}. */
  path: string;
  summary: string;
  tags: string[];
  access: Access;
  body?: ZodType<B>;
  query?: ZodType<Q>;
  params?: ZodType<P>;
  bodyLimit?: number;
  /** How the body is encoded: JSON (the default), application/x-www-form-urlencoded (OAuth), or gzip bytes. */
  bodyType?: "json" | "form" | "gzip";
  /**
   * WARNING: on the hot path, log lines are not tagged with the request id through
   * AsyncLocalStorage, which costs about a tenth of the decision throughput on Node 20. The
   * access log line still carries it.
   */
  hotPath?: boolean;
  responses: Record<number, { description: string; schema?: ZodType; contentType?: string }>;
  handle(ctx: Context<B, Q, P>): Promise<Reply> | Reply;
}

/** Lets a list of routes with different body types be declared in one array. */
export function route<B = undefined, Q = undefined, P = undefined>(spec: RouteSpec<B, Q, P>): RouteSpec {
  return spec as unknown as RouteSpec;
}

function describeIssue(issue: z.core.$ZodIssue): FieldError[] {
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => ({ path: path ? `${path}.${k}` : k, message: `unknown field "${k}"` }));
  }
  if (issue.code === "invalid_type" && /received undefined/.test(issue.message)) {
    return [{ path, message: `"${path}" is required` }];
  }
  return [{ path: path || "(body)", message: issue.message }];
}

function validate<T>(schema: ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = result.error.issues.flatMap(describeIssue);
  const first = errors[0];
  // A schema may name a more specific code for its own check (e.g. invalid_semver); it wins when all issues agree.
  const codes = new Set(result.error.issues.map((i) => ((i as { params?: { code?: string } }).params?.code ?? "validation_failed")));
  const code = codes.size === 1 ? [...codes][0] : "validation_failed";
  throw new InputError(code, `invalid ${where}: ${first.path ? `${first.path}: ` : ""}${first.message}`, errors);
}

const MEDIA = { json: "application/json", form: "application/x-www-form-urlencoded", gzip: "application/gzip" } as const;

function toExpressPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ":$1");
}

export interface Mounting {
  authenticate(authorization: string | undefined): Principal | Promise<Principal>;
  defaultBodyLimit: number;
}

function authorize(access: Access, principal: Principal): void {
  if ("agent" in access) {
    if (principal.kind !== "agent") throw new NotAllowedError("agent_only", "only an agent, with its own token, may ask for a decision");
    return;
  }
  if ("roles" in access) {
    if (principal.kind === "agent") {
      if (access.agents) return;
      throw new NotAllowedError("agent_not_allowed", "agent tokens can only ask for decisions about their own agent");
    }
    if (principal.kind === "human" && access.humans) return;
    const held = rolesOf(principal);
    if (!held.includes("admin") && !held.some((r) => access.roles.includes(r))) {
      throw new NotAllowedError("role_not_allowed", `this operation needs one of the roles: admin, ${access.roles.join(", ")}`);
    }
  }
}

export function mount(app: express.Express, routes: RouteSpec[], m: Mounting): void {
  for (const r of routes) {
    const handlers: express.RequestHandler[] = [];
    if (!("public" in r.access)) {
      const access = r.access;
      handlers.push(async (req, res, next) => {
        const principal = await m.authenticate(req.headers.authorization);
        authorize(access, principal);
        res.locals.principal = principal;
        next();
      });
    }
    const type = MEDIA[r.bodyType ?? "json"];
    if (r.body) {
      const limit = r.bodyLimit ?? m.defaultBodyLimit;
      handlers.push(
        r.bodyType === "form"
          ? express.urlencoded({ limit, extended: false, parameterLimit: 50 })
          : r.bodyType === "gzip"
            ? express.raw({ limit, type: ["application/gzip", "application/x-gzip", "application/x-tar+gzip"] })
            : express.json({ limit, strict: true, type }),
      );
    }
    if (!r.hotPath) handlers.push((_req, res, next) => runInRequest(res.locals.requestId as string, next));
    handlers.push(async (req, res) => {
      if (r.body && (req.body === undefined || (r.bodyType === "gzip" && !Buffer.isBuffer(req.body)))) {
        throw new InputError("content_type_invalid", `send the request body with Content-Type: ${type}`, [{ path: "(body)", message: `expected ${type}` }]);
      }
      const reply = await r.handle({
        body: r.body ? validate(r.body, req.body, "request body") : undefined,
        query: r.query ? validate(r.query, req.query, "query") : undefined,
        params: r.params ? validate(r.params, req.params, "path") : undefined,
        principal: (res.locals.principal as Principal | undefined) ?? null,
        req,
        res,
      });
      if (reply.headers) res.set(reply.headers);
      res.status(reply.status);
      if (reply.stream) {
        if (reply.contentType) res.type(reply.contentType);
        for await (const chunk of reply.stream) {
          if (res.destroyed) return;
          if (!res.write(chunk)) await once(res, "drain");
        }
        res.end();
      } else if (reply.body === undefined) res.end();
      else if (reply.contentType) res.type(reply.contentType).send(reply.body);
      else res.json(reply.body);
    });
    app[r.method](toExpressPath(r.path), ...handlers);
  }
}

/** Registers routes in the OpenAPI document, from the same schemas that validate them. */
export function document(registry: OpenAPIRegistry, routes: RouteSpec[]): void {
  registry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer", description: "API key (claiim_…) or agent token (ES256 JWT)" });
  for (const r of routes) {
    const responses: Record<string, unknown> = {};
    for (const [status, resp] of Object.entries(r.responses)) {
      responses[status] = resp.schema
        ? { description: resp.description, content: { [resp.contentType ?? "application/json"]: { schema: resp.schema } } }
        : { description: resp.description };
    }
    const problem = { content: { "application/problem+json": { schema: Problem } } };
    if (r.body || r.query || r.params) responses["400"] ??= { description: "Invalid request", ...problem };
    if (!("public" in r.access)) {
      responses["401"] ??= { description: "Missing, invalid, expired or revoked credential", ...problem };
      responses["403"] ??= { description: "The credential may not do this", ...problem };
    }
    const access =
      "public" in r.access
        ? "public"
        : "agent" in r.access
          ? "agent token"
          : `roles: admin, ${r.access.roles.join(", ")}${r.access.humans ? "; any signed-in human (the service decides)" : ""}${r.access.agents ? "; agent tokens (their own only)" : ""}`;
    registry.registerPath({
      method: r.method,
      path: r.path,
      summary: r.summary,
      description: `Access: ${access}.`,
      tags: r.tags,
      security: "public" in r.access ? [] : [{ bearer: [] }],
      request: {
        params: r.params as never,
        query: r.query as never,
        body: r.body ? { content: { [MEDIA[r.bodyType ?? "json"]]: { schema: r.body } } } : undefined,
      },
      responses: responses as never,
    });
  }
}
