import type { ErrorRequestHandler, RequestHandler } from "express";
import { ClaiimError, InputError, NotFoundError, PayloadTooLargeError, ServiceUnavailableError } from "../lib/errors";
import type { Logger } from "../lib/logger";

interface BodyParserError {
  type?: string;
  status?: number;
  limit?: number;
}

/** Errors that Express's body parser raises, as problems of our own. */
function fromBodyParser(err: BodyParserError): ClaiimError | null {
  switch (err.type) {
    case "entity.parse.failed":
      return new InputError("malformed_json", "the request body is not valid JSON", [{ path: "(body)", message: "malformed JSON" }]);
    case "entity.too.large":
      return new PayloadTooLargeError("payload_too_large", `the request body exceeds the limit of ${err.limit} bytes`);
    case "encoding.unsupported":
    case "charset.unsupported":
      return new InputError("content_encoding_unsupported", "the request body's encoding or charset is not supported");
    case "request.aborted":
      return new InputError("request_aborted", "the request body was not received in full");
    default:
      return null;
  }
}

/** Driver and Prisma failures that mean the database is unreachable or refused the work. */
function isDatabaseError(err: unknown): boolean {
  const name = (err as Error)?.name ?? "";
  const code = (err as { code?: string })?.code ?? "";
  return name.startsWith("PrismaClient") || name === "DriverAdapterError" || code.startsWith("SQLITE_") || code === "ECONNREFUSED" || /^(08|53|57)/.test(code);
}

export function notFoundHandler(): RequestHandler {
  return (req, _res, next) => next(new NotFoundError("route_not_found", `no route ${req.method} ${req.path}`));
}

/**
 * The one place errors become responses: RFC 9457 problem details with a stable `code`. Unknown
 * errors are logged with their stack and answered without it.
 */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    let problem = err instanceof ClaiimError ? err : fromBodyParser(err as BodyParserError);
    if (!problem && isDatabaseError(err)) {
      logger.error("database error", { request_id: res.locals.requestId, error: (err as Error).message });
      problem = new ServiceUnavailableError("database_unavailable", "the database could not complete the request; nothing was changed by it");
    }
    const requestId = res.locals.requestId as string | undefined;
    if (!problem) {
      logger.error("unhandled error", { request_id: requestId, error: (err as Error)?.message, stack: (err as Error)?.stack });
      res.status(500).type("application/problem+json").json({
        type: "urn:claiim:problem:internal_error",
        title: "Internal error",
        status: 500,
        code: "internal_error",
        detail: `an internal error occurred; quote request id ${requestId} to your operator`,
        request_id: requestId,
      });
      return;
    }
    if (res.headersSent) return void res.end();
    if (problem.status === 401) res.set("WWW-Authenticate", 'Bearer realm="claiim"');
    res
      .status(problem.status)
      .type("application/problem+json")
      .json({
        type: `urn:claiim:problem:${problem.code}`,
        title: problem.title,
        status: problem.status,
        code: problem.code,
        detail: problem.message,
        instance: req.originalUrl.split("?")[0],
        request_id: requestId,
        ...(problem instanceof InputError && problem.errors.length ? { errors: problem.errors } : {}),
        ...problem.extra,
      });
  };
}
