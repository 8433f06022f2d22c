import { randomUUID } from "node:crypto";
import express from "express";
import type { Logger } from "../lib/logger";
import { mount, type Mounting, type RouteSpec } from "./route";
import { notFoundHandler, problemHandler } from "./problem";
import { type Principal, principalName } from "../shared/principal";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** `extra` handlers (the web console) come after the API's routes and before the 404. */
export function createApp(routes: RouteSpec[], mounting: Mounting, logger: Logger, extra: express.RequestHandler[] = []): express.Express {
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);
  app.use((req, res, next) => {
    const incoming = req.get("x-request-id");
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.locals.requestId = requestId;
    res.set("X-Request-Id", requestId);
    const started = process.hrtime.bigint();
    res.on("finish", () => {
      const principal = res.locals.principal as Principal | undefined;
      // WARNING: never log headers or bodies here: they carry tokens.
      logger.info("request", {
        request_id: requestId,
        method: req.method,
        // req.originalUrl: a router mounted at a path (the console) strips req.path to what is below it.
        path: req.originalUrl.split("?")[0],
        status: res.statusCode,
        duration_ms: Number(process.hrtime.bigint() - started) / 1e6,
        principal: principal ? principalName(principal) : undefined,
      });
    });
    next();
  });
  mount(app, routes, mounting);
  for (const handler of extra) app.use(handler);
  app.use(notFoundHandler());
  app.use(problemHandler(logger));
  return app;
}
