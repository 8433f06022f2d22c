import { randomUUID } from "node:crypto";
import type { RequestListener } from "node:http";
import express from "express";
import proxyaddr from "proxy-addr";
import type { Logger } from "../lib/logger";
import { mount, type Mounting, type RequestLocals, type RouteSpec } from "./route";
import { hotPath, type Observing } from "./hot-path";
import { notFoundHandler, problemHandler } from "./problem";
import { principalName } from "../shared/principal";
import type { Metrics } from "../ops/metrics";
import type { RateLimits } from "../ops/rate-limits";
import { Tracing } from "../ops/tracing";

/** What operating CLAIIM adds to every request: metrics, rate limits, traces, and who the client is behind proxies. */
export interface Operations {
  metrics?: Metrics;
  limits?: RateLimits;
  tracing?: Tracing;
  /** Express's "trust proxy": which proxies' X-Forwarded-For names the client (false: none). */
  trustProxy?: boolean | number | string;
}

/** The route as declared (/v1/agents/{id}), for metrics and span names; "unmatched" for 404s and the console. */
function routeOf(req: express.Request): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  return typeof path === "string" ? path.replace(/:(\w+)/g, "{$1}") : "unmatched";
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** How every request is opened and closed, whether Express or the hot path serves it. */
function observing(ops: Operations, logger: Logger): Observing {
  return {
    open(method, path, headers, res, locals) {
      const incoming = headers["x-request-id"];
      const requestId = typeof incoming === "string" && REQUEST_ID.test(incoming) ? incoming : randomUUID();
      res.setHeader("X-Request-Id", requestId);
      locals.requestId = requestId;
      locals.span = ops.tracing?.startRequest(method, path, headers) ?? null;
      return locals as RequestLocals;
    },
    admit: ops.limits ? (address) => ops.limits!.admitCredential(address) : undefined,
    close(method, route, path, status, address, locals, started) {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      ops.metrics?.answered(method, route, status, seconds, locals.problemCode);
      if (status === 401) ops.limits?.failed(address(), locals.oauthClient ?? null);
      Tracing.end(locals.span, method, route, status, locals.traceAttributes ?? {});
      // WARNING: never log headers or bodies here: they carry tokens.
      // Checked first: a line below the level would still be built and formatted.
      if (!logger.isLevelEnabled("http")) return;
      logger.http("request", {
        request_id: locals.requestId,
        method,
        path,
        status,
        duration_ms: seconds * 1000,
        principal: locals.principal ? principalName(locals.principal) : undefined,
      });
    },
  };
}

/**
 * The HTTP request listener: the hot routes (the decision) served directly (hot-path.ts), every
 * other request by Express. `extra` handlers (the web console) come after the API's routes and
 * before the 404.
 */
export function createApp(routes: RouteSpec[], mounting: Mounting, logger: Logger, extra: express.RequestHandler[] = [], ops: Operations = {}): RequestListener {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("trust proxy", ops.trustProxy ?? false);
  const observe = observing(ops, logger);
  app.use((req, res, next) => {
    const started = process.hrtime.bigint();
    // req.originalUrl: a router mounted at a path (the console) strips req.path to what is below it.
    const path = req.originalUrl.split("?")[0];
    const locals = observe.open(req.method, path, req.headers, res, res.locals as Partial<RequestLocals>);
    res.on("finish", () => observe.close(req.method, routeOf(req), path, res.statusCode, () => req.ip ?? "unknown", locals, started));
    next();
  });
  if (observe.admit) {
    const admit = observe.admit;
    // An address past its failed authentications is refused before its credential is looked at.
    app.use((req, _res, next) => {
      if (req.headers.authorization === undefined && req.path !== "/oauth/token") return next();
      admit(req.ip ?? "unknown").then(() => next(), next);
    });
  }
  mount(app, routes, mounting);
  for (const handler of extra) app.use(handler);
  app.use(notFoundHandler());
  app.use(problemHandler(logger));
  // Express's own "trust proxy" function, so that both ways name the same client.
  const trust = app.get("trust proxy fn") as Parameters<typeof proxyaddr>[1];
  const hot = hotPath(routes, mounting, observe, (req) => proxyaddr(req, trust), logger);
  if (!hot) return app;
  return (req, res) => {
    if (!hot(req, res)) app(req, res);
  };
}
