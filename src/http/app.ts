import { randomUUID } from "node:crypto";
import express from "express";
import type { Logger } from "../lib/logger";
import { mount, type Mounting, type RouteSpec } from "./route";
import { notFoundHandler, problemHandler } from "./problem";
import { type Principal, principalName } from "../shared/principal";
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

/** `extra` handlers (the web console) come after the API's routes and before the 404. */
export function createApp(routes: RouteSpec[], mounting: Mounting, logger: Logger, extra: express.RequestHandler[] = [], ops: Operations = {}): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.set("trust proxy", ops.trustProxy ?? false);
  app.use((req, res, next) => {
    const incoming = req.get("x-request-id");
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.locals.requestId = requestId;
    res.set("X-Request-Id", requestId);
    const started = process.hrtime.bigint();
    const span = ops.tracing?.startRequest(req.method, req.originalUrl.split("?")[0], req.headers) ?? null;
    res.locals.span = span;
    res.on("finish", () => {
      const principal = res.locals.principal as Principal | undefined;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeOf(req);
      ops.metrics?.answered(req.method, route, res.statusCode, seconds, res.locals.problemCode as string | undefined);
      if (res.statusCode === 401) ops.limits?.failed(req.ip ?? "unknown", (res.locals.oauthClient as string | undefined) ?? null);
      Tracing.end(span, req.method, route, res.statusCode, (res.locals.traceAttributes as Record<string, string | number> | undefined) ?? {});
      // WARNING: never log headers or bodies here: they carry tokens.
      // Checked first: a line below the level would still be built and formatted.
      if (!logger.isLevelEnabled("http")) return;
      logger.http("request", {
        request_id: requestId,
        method: req.method,
        // req.originalUrl: a router mounted at a path (the console) strips req.path to what is below it.
        path: req.originalUrl.split("?")[0],
        status: res.statusCode,
        duration_ms: seconds * 1000,
        principal: principal ? principalName(principal) : undefined,
      });
    });
    next();
  });
  if (ops.limits) {
    const limits = ops.limits;
    // An address past its failed authentications is refused before its credential is looked at.
    app.use((req, _res, next) => {
      if (req.headers.authorization === undefined && req.path !== "/oauth/token") return next();
      limits.admitCredential(req.ip ?? "unknown").then(() => next(), next);
    });
  }
  mount(app, routes, mounting);
  for (const handler of extra) app.use(handler);
  app.use(notFoundHandler());
  app.use(problemHandler(logger));
  return app;
}
