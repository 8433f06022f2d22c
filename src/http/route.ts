import { once } from "node:events";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import express from "express";
import type { Span } from "@opentelemetry/api";
import type { ZodType } from "zod";
import { z, Problem, type OpenAPIRegistry } from "./openapi";
import { ClaiimError, InputError, MethodNotAllowedError, NotAllowedError, type FieldError } from "../lib/errors";
import { MAX_JSON_DEPTH, textProblems } from "../lib/text";
import { PROBLEMS, type CodeWith, type ProblemCode } from "../lib/problems";
import { runInRequest } from "../lib/logger";
import { type Principal, type Role, rolesOf } from "../shared/principal";

/**
 * Who may call a route: anyone, API keys and humans with one of these roles (admin always may), or
 * agents. A roles route may also admit every signed-in human (`humans`) or every agent (`agents`),
 * when the service itself decides what each may do (approvals: the accountable human needs no role).
 */
export type Access = { public: true } | { roles: readonly Role[]; humans?: true; agents?: true } | { agent: true };

export type AgentPrincipal = Extract<Principal, { kind: "agent" }>;
/** API keys and signed-in humans: the credentials that hold roles. */
export type StaffPrincipal = Exclude<Principal, { kind: "agent" }>;

/**
 * What a route's handler is given as its caller, from its access: nobody on a public route, the
 * agent on an agent route, a key or a human on a roles route (any principal when it admits agents).
 * The mounting checks it before the handler runs, so the handler never checks again.
 */
export type PrincipalFor<A extends Access> = A extends { public: true } ? null : A extends { agent: true } ? AgentPrincipal : A extends { agents: true } ? Principal : StaffPrincipal;

export interface Reply {
  status: number;
  body?: unknown;
  /** A body sent piece by piece as it is produced, with back-pressure. */
  stream?: AsyncIterable<string>;
  headers?: Record<string, string>;
  contentType?: string;
}

/**
 * What the access log, the metrics and the trace of a request carry (Express's res.locals, or the
 * hot path's own object). A handler may add to it.
 */
export interface RequestLocals {
  requestId: string;
  span: Span | null;
  principal?: Principal;
  /** Which problem the answer is, for the access log and the metrics. */
  problemCode?: string;
  /** The OAuth client a token request names: a failed one counts against it too. */
  oauthClient?: string | null;
  /** Added to the request's span when it ends. */
  traceAttributes?: Record<string, string | number>;
}

/**
 * What a handler is given. No Express request or response: the same handler serves through
 * Express and through the hot path (hot-path.ts), which has neither.
 */
export interface Context<B, Q, P, Pr = Principal | null> {
  body: B;
  query: Q;
  params: P;
  principal: Pr;
  /** The request's headers, names in lower case. */
  headers: IncomingHttpHeaders;
  /** The client's address as the rate limits count it: behind trusted proxies, the one they name. */
  clientAddress(): string;
  /** Aborted when the caller hangs up before the answer. */
  hangUp(): AbortSignal;
  locals: RequestLocals;
}

export interface RouteSpec<B = unknown, Q = unknown, P = unknown, A extends Access = Access> {
  method: "get" | "post" | "put" | "patch" | "delete";
  /** OpenAPI form, e.g. /v1/agents/{id}. */
  path: string;
  summary: string;
  tags: string[];
  access: A;
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
  /** `alsoAs`: other media types the same status may be sent as (e.g. text/csv), as text. */
  responses: Record<number, { description: string; schema?: ZodType; contentType?: string; alsoAs?: string[] }>;
  handle(ctx: Context<B, Q, P, PrincipalFor<A>>): Promise<Reply> | Reply;
}

/** Lets a list of routes with different body types and accesses be declared in one array. */
export function route<B = undefined, Q = undefined, P = undefined, const A extends Access = Access>(spec: RouteSpec<B, Q, P, A>): RouteSpec {
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

/**
 * The text rule (lib/text.ts), applied to everything a route reads from the request before its
 * schema sees it: every string and key well-formed Unicode without NUL, nesting bounded.
 */
function checkText(value: unknown, where: string): void {
  const { text, tooDeep } = textProblems(value);
  if (tooDeep) throw new InputError("json_too_deep", `invalid ${where}: ${tooDeep.path} is nested deeper than ${MAX_JSON_DEPTH} levels`, [tooDeep]);
  if (text.length) throw new InputError("invalid_text", `invalid ${where}: ${text[0].path} ${text[0].message.replace(/^text /, "")}`, text);
}

export function validate<T>(schema: ZodType<T>, value: unknown, where: string): T {
  checkText(value, where);
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const errors = result.error.issues.flatMap(describeIssue);
  const first = errors[0];
  // A schema may name a more specific code for its own check (e.g. invalid_semver); it wins when all issues agree.
  const codes = new Set(result.error.issues.map((i) => (i as { params?: { code?: string } }).params?.code ?? "validation_failed"));
  const only = codes.size === 1 ? [...codes][0] : "validation_failed";
  const code: CodeWith<400> = only in PROBLEMS && PROBLEMS[only as ProblemCode] === 400 ? (only as CodeWith<400>) : "validation_failed";
  throw new InputError(code, `invalid ${where}: ${first.path ? `${first.path}: ` : ""}${first.message}`, errors);
}

const MEDIA = { json: "application/json", form: "application/x-www-form-urlencoded", gzip: "application/gzip" } as const;

function toExpressPath(path: string): string {
  return path.replace(/\{(\w+)\}/g, ":$1");
}

export interface Mounting {
  authenticate(authorization: string | undefined): Principal | Promise<Principal>;
  defaultBodyLimit: number;
  /** Applies what other processes committed and this one has not followed yet; true when there was any (ChronFollower.catchUpNow). */
  catchUp?: () => Promise<boolean>;
}

/**
 * The answers that say "this process does not know it": a credential, a client, an organisation, a
 * human, an agent, a policy version... that another process (a worker, a replica) may have created
 * a moment ago, before this one followed its Chron event. Such an answer is given only after
 * catching up once: whoever creates something through one process and uses it through another at
 * once (a new connection in worker mode) finds it, as with one process. Only misses pay the read.
 */
const MISSES: ReadonlySet<ProblemCode> = new Set<ProblemCode>([
  "api_key_invalid",
  "token_invalid",
  "client_unknown",
  "oidc_org_unknown",
  "owner_not_found",
  "organization_not_found",
  "human_not_found",
  "agent_not_found",
  "credential_not_found",
  "api_key_not_found",
  "client_not_found",
  "approval_not_found",
  "policy_version_not_found",
  "bundle_not_found",
  "no_shadow",
]);

/**
 * Runs `work`; when it fails with a miss and catching up applied something new, runs it once more.
 * WARNING: `work` must fail before it changes anything when it fails with a miss (a lookup comes
 * first), or the second run would change it twice.
 */
export async function knowingEveryProcess<T>(m: Mounting, work: () => T | Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!m.catchUp || !(err instanceof ClaiimError) || !MISSES.has(err.code) || !(await m.catchUp())) throw err;
    return work();
  }
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

/** The caller of a route that is not public, known (after catching up once) and admitted by the route's access. */
export async function authenticated(access: Exclude<Access, { public: true }>, m: Mounting, authorization: string | undefined): Promise<Principal> {
  const principal = await knowingEveryProcess(m, () => m.authenticate(authorization));
  authorize(access, principal);
  return principal;
}

/**
 * Mounts every route, then answers other methods on known paths with 405 and the Allow header
 * (RFC 9110 §15.5.6), so that a wrong method is told apart from a wrong path.
 */
export function mount(app: express.Express, routes: RouteSpec[], m: Mounting): void {
  const methods = new Map<string, Set<string>>();
  for (const r of routes) {
    const path = toExpressPath(r.path);
    if (!methods.has(path)) methods.set(path, new Set());
    methods.get(path)!.add(r.method.toUpperCase());
    if (r.method === "get") methods.get(path)!.add("HEAD");
  }
  const guard = (path: string, allowed: Set<string>) => {
    const allow = [...allowed].sort().join(", ");
    app.all(path, (req, res, next) => {
      if (allowed.has(req.method)) return next();
      if (req.method === "OPTIONS") return void res.set("Allow", `${allow}, OPTIONS`).status(204).end();
      next(new MethodNotAllowedError("method_not_allowed", `${req.method} is not supported on ${req.path}; use ${allow}`, allow));
    });
  };
  // WARNING: order matters. A fixed path (/v1/policies/shadow) is guarded before the routes, or
  // a parametrised route (/v1/policies/:version) would take its other methods for itself; a
  // parametrised path is guarded after them, or it would take fixed paths' own methods.
  // Hot routes (the decision) go first of all: Express tries its layers one by one, and the decision
  // should not pay for matching the path of every other route. A hot route's path is fixed and it
  // takes its own method only, so it can take nothing from another route or guard.
  const hot = routes.filter((r) => r.hotPath);
  for (const r of hot) {
    if (r.path.includes("{")) throw new Error(`hot route ${r.method.toUpperCase()} ${r.path} must have a fixed path`);
    mountOne(app, r, m);
  }
  for (const [path, allowed] of methods) if (!path.includes(":")) guard(path, allowed);
  for (const r of routes) if (!r.hotPath) mountOne(app, r, m);
  for (const [path, allowed] of methods) if (path.includes(":")) guard(path, allowed);
}

/** The body parser of a route: Express's own, which also serves the hot path (it reads a plain IncomingMessage). */
export function bodyParser(r: RouteSpec, m: Mounting): express.RequestHandler | null {
  if (!r.body) return null;
  const limit = r.bodyLimit ?? m.defaultBodyLimit;
  return r.bodyType === "form"
    ? express.urlencoded({ limit, extended: false, parameterLimit: 50 })
    : r.bodyType === "gzip"
      ? express.raw({ limit, type: ["application/gzip", "application/x-gzip", "application/x-tar+gzip"] })
      : express.json({ limit, strict: true, type: MEDIA[r.bodyType ?? "json"] });
}

/** The body its parser left on the request, or the problem of a body sent as another media type (the parser left none). */
export function parsedBody(r: RouteSpec, body: unknown): unknown {
  if (r.body && (body === undefined || (r.bodyType === "gzip" && !Buffer.isBuffer(body)))) {
    const type = MEDIA[r.bodyType ?? "json"];
    throw new InputError("content_type_invalid", `send the request body with Content-Type: ${type}`, [{ path: "(body)", message: `expected ${type}` }]);
  }
  return body;
}

/** Aborted when the response's connection closes before the response has been sent in full. */
export function hangUpOf(res: ServerResponse): () => AbortSignal {
  let gone: AbortController | null = null;
  return () => {
    if (!gone) {
      const controller = (gone = new AbortController());
      if (res.destroyed && !res.writableFinished) controller.abort();
      else res.once("close", () => controller.abort());
    }
    return gone.signal;
  };
}

/** Sends a reply through a plain response: the hot path's way, and Express's for streams. */
export async function send(res: ServerResponse, reply: Reply): Promise<void> {
  if (reply.stream) {
    for await (const chunk of reply.stream) {
      if (res.destroyed) return;
      if (!res.write(chunk)) await once(res, "drain");
    }
    res.end();
    return;
  }
  if (reply.body === undefined) return void res.end();
  const data = reply.contentType === undefined ? JSON.stringify(reply.body) : Buffer.isBuffer(reply.body) ? reply.body : String(reply.body);
  res.setHeader("Content-Type", reply.contentType ?? "application/json; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(data));
  res.end(data);
}

function mountOne(app: express.Express, r: RouteSpec, m: Mounting): void {
  const handlers: express.RequestHandler[] = [];
  if (!("public" in r.access)) {
    const access = r.access;
    handlers.push(async (req, res, next) => {
      res.locals.principal = await authenticated(access, m, req.headers.authorization);
      next();
    });
  }
  const parser = bodyParser(r, m);
  if (parser) handlers.push(parser);
  if (!r.hotPath) handlers.push((_req, res, next) => runInRequest(res.locals.requestId as string, next));
  handlers.push(async (req, res) => {
    const locals = res.locals as RequestLocals;
    const ctx = {
      body: r.body ? validate(r.body, parsedBody(r, req.body), "request body") : undefined,
      query: r.query ? validate(r.query, req.query, "query") : undefined,
      params: r.params ? validate(r.params, req.params, "path") : undefined,
      principal: locals.principal ?? null,
      headers: req.headers,
      clientAddress: () => req.ip ?? "unknown",
      hangUp: hangUpOf(res),
      locals,
    };
    const reply = await knowingEveryProcess(m, () => r.handle(ctx));
    if (reply.headers) res.set(reply.headers);
    res.status(reply.status);
    if (reply.stream) {
      if (reply.contentType) res.type(reply.contentType);
      await send(res, reply);
    } else if (reply.body === undefined) res.end();
    else if (reply.contentType) res.type(reply.contentType).send(reply.body);
    else res.json(reply.body);
  });
  app[r.method](toExpressPath(r.path), ...handlers);
}

/** True when an input schema has a field naming an organisation or a human, which may not exist. */
function namesReferences(schema: ZodType | undefined): boolean {
  const shape = (schema as { shape?: Record<string, unknown> } | undefined)?.shape;
  return !!shape && ["organization", "owner"].some((k) => k in shape);
}

/** Registers routes in the OpenAPI document, from the same schemas that validate them. */
export function document(registry: OpenAPIRegistry, routes: RouteSpec[]): void {
  registry.registerComponent("securitySchemes", "bearer", { type: "http", scheme: "bearer", description: "API key (claiim_…) or agent token (ES256 JWT)" });
  for (const r of routes) {
    const responses: Record<string, unknown> = {};
    const problem = { content: { "application/problem+json": { schema: Problem } } };
    for (const [status, resp] of Object.entries(r.responses)) {
      const others = Object.fromEntries((resp.alsoAs ?? []).map((t) => [t, { schema: { type: "string" } }]));
      responses[status] = resp.schema
        ? { description: resp.description, content: { [resp.contentType ?? "application/json"]: { schema: resp.schema }, ...others } }
        : Number(status) >= 400
          ? { description: resp.description, ...problem }
          : { description: resp.description };
    }
    // The problems every route of its kind can answer, so that the document lists every status.
    if (r.body || r.query || r.params) responses["400"] ??= { description: "Invalid request (validation_failed, invalid_text, json_too_deep, …)", ...problem };
    if (!("public" in r.access)) {
      responses["401"] ??= { description: "Missing, invalid, expired or revoked credential", ...problem };
      responses["403"] ??= { description: "The credential may not do this", ...problem };
    }
    if (r.params || namesReferences(r.body) || namesReferences(r.query)) responses["404"] ??= { description: "Something the request names does not exist, or is not visible to this credential", ...problem };
    if (r.body) {
      responses["413"] ??= { description: "The request body is too large (payload_too_large)", ...problem };
      responses["415"] ??= { description: "The request body's encoding or charset is not supported", ...problem };
    }
    // The failed-authentication limit applies to every request that presents a credential, before routing.
    responses["429"] ??= { description: "Too many requests (rate_limited): this address or client is past a rate limit; Retry-After says when to try again", ...problem };
    responses["503"] ??= { description: "A dependency (the database, Chron) cannot serve the request; nothing was changed or decided", ...problem };
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
        body: r.body ? { required: true, content: { [MEDIA[r.bodyType ?? "json"]]: { schema: r.body } } } : undefined,
      },
      responses: responses as never,
    });
  }
}
