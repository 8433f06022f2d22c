import type { IncomingMessage, ServerResponse } from "node:http";
import type { RequestHandler } from "express";
import { authenticated, bodyParser, hangUpOf, knowingEveryProcess, parsedBody, send, validate, type Mounting, type RequestLocals, type RouteSpec } from "./route";
import { problemAnswer, sendProblem } from "./problem";
import type { Logger } from "../lib/logger";

/**
 * How a request is opened and closed, the same whichever way it is served (app.ts): its id, its
 * span, its rate limit; at its end, the metrics, the trace, the failed-authentication count and the
 * access log line.
 */
export interface Observing {
  open(method: string, path: string, headers: IncomingMessage["headers"], res: ServerResponse, locals: Partial<RequestLocals>): RequestLocals;
  /** Resolves when the client's address may present a credential (the failed-authentication limit). */
  admit?(address: string): Promise<void>;
  close(method: string, route: string, path: string, status: number, address: () => string, locals: RequestLocals, started: bigint): void;
}

interface HotRoute {
  spec: RouteSpec;
  parse: RequestHandler | null;
}

/**
 * The hot path: the routes marked `hotPath` (the decision), served straight from Node's HTTP
 * server, without Express. Express re-parents every request and response onto its own prototypes
 * and runs its router and response helpers, which on this machine cost more CPU than the rest of a
 * request's HTTP handling: a body-parser behind bare `node:http` answered about 3 times the
 * requests per second of the same route in Express 5.
 *
 * It serves only the exact path with the route's method; anything else about the request (another
 * method, a trailing slash, a path's other spelling) goes to Express, where the same route is
 * mounted too and answers the same.
 *
 * WARNING: the same route must give the same answer either way. Both use the same parts (the
 * authenticator and catch-up, `authorize`, Express's body parser, `validate`, the handler,
 * `problemAnswer`); test/routes/hot-path.test.ts sends the same requests both ways and compares.
 */
export function hotPath(routes: RouteSpec[], m: Mounting, observing: Observing, clientAddress: (req: IncomingMessage) => string, logger: Logger): ((req: IncomingMessage, res: ServerResponse) => boolean) | null {
  const table = new Map<string, HotRoute>();
  for (const r of routes) {
    if (!r.hotPath) continue;
    // Without a router, nothing would fill them in.
    if (r.path.includes("{") || r.query || r.params) throw new Error(`hot route ${r.method.toUpperCase()} ${r.path} must have a fixed path and no query`);
    if (r.bodyType && r.bodyType !== "json") throw new Error(`hot route ${r.method.toUpperCase()} ${r.path} must take JSON`);
    table.set(`${r.method.toUpperCase()} ${r.path}`, { spec: r, parse: bodyParser(r, m) });
  }
  if (table.size === 0) return null;

  const serve = (hot: HotRoute, req: IncomingMessage, res: ServerResponse, path: string): void => {
    const started = process.hrtime.bigint();
    const method = req.method as string;
    const locals = observing.open(method, path, req.headers, res, {});
    let address: string | undefined;
    const addressOf = () => (address ??= clientAddress(req));
    res.once("finish", () => observing.close(method, hot.spec.path, path, res.statusCode, addressOf, locals, started));
    answer(hot, req, res, locals, addressOf).catch((err: unknown) => {
      const problem = problemAnswer(err, logger, locals.requestId, path);
      locals.problemCode = problem.code;
      sendProblem(res, problem);
    });
  };

  const answer = async (hot: HotRoute, req: IncomingMessage, res: ServerResponse, locals: RequestLocals, addressOf: () => string): Promise<void> => {
    const r = hot.spec;
    const authorization = req.headers.authorization;
    if (observing.admit && authorization !== undefined) await observing.admit(addressOf());
    let principal = null;
    if (!("public" in r.access)) {
      principal = locals.principal = await authenticated(r.access, m, authorization);
    }
    if (hot.parse) {
      const parse = hot.parse;
      await new Promise<void>((resolve, reject) => parse(req as never, res as never, (err?: unknown) => (err ? reject(err) : resolve())));
    }
    const ctx = {
      body: r.body ? validate(r.body, parsedBody(r, (req as { body?: unknown }).body), "request body") : undefined,
      query: undefined,
      params: undefined,
      principal,
      headers: req.headers,
      clientAddress: addressOf,
      hangUp: hangUpOf(res),
      locals,
    };
    const reply = await knowingEveryProcess(m, () => r.handle(ctx));
    res.statusCode = reply.status;
    if (reply.headers) for (const [name, value] of Object.entries(reply.headers)) res.setHeader(name, value);
    await send(res, reply);
  };

  return (req, res) => {
    const url = req.url ?? "";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const hot = table.get(`${req.method} ${path}`);
    if (!hot) return false;
    serve(hot, req, res, path);
    return true;
  };
}
