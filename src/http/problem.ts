import type { ErrorRequestHandler, RequestHandler } from "express";
import { ClaiimError, InputError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError, RateLimitedError, ServiceUnavailableError, UnsupportedMediaTypeError } from "../lib/errors";
import type { Logger } from "../lib/logger";

interface HttpError {
  type?: string;
  status?: number;
  statusCode?: number;
  limit?: number;
  code?: string;
  message?: string;
}

/**
 * Errors that Express, its router and its body parsers raise for a request they cannot read, as
 * problems of our own. Each is the client's mistake (a 4xx status of theirs), so none may become
 * a 500.
 */
function fromHttpError(err: HttpError): ClaiimError | null {
  switch (err.type) {
    case "entity.parse.failed":
      return new InputError("malformed_json", "the request body is not valid JSON", [{ path: "(body)", message: "malformed JSON" }]);
    case "entity.too.large":
      return new PayloadTooLargeError("payload_too_large", `the request body exceeds the limit of ${err.limit} bytes`);
    case "parameters.too.many":
      return new PayloadTooLargeError("too_many_parameters", "the form has more parameters than this endpoint accepts");
    case "encoding.unsupported":
      return new UnsupportedMediaTypeError("content_encoding_unsupported", "the request body's Content-Encoding is not supported (identity, gzip, deflate and br are)");
    case "charset.unsupported":
      return new UnsupportedMediaTypeError("charset_unsupported", "the request body's charset is not supported; send UTF-8");
    case "request.aborted":
      return new InputError("request_aborted", "the request body was not received in full");
    case "request.size.invalid":
      return new InputError("content_length_invalid", "the request body's length differs from its Content-Length");
  }
  const status = err.status ?? err.statusCode;
  if (typeof status !== "number" || status < 400 || status > 499) return null;
  // The router could not percent-decode a path segment (e.g. /v1/agents/%ZZ).
  if (/^Failed to decode param/.test(err.message ?? "")) {
    return new InputError("path_invalid", "the request path is not valid percent-encoded UTF-8", [{ path: "(path)", message: "cannot be decoded" }]);
  }
  // A compressed body that does not decompress: zlib's error, passed on by the body parser.
  if (/^Z_/.test(err.code ?? "") || /incorrect header check|invalid (stored )?block|unexpected end of file/i.test(err.message ?? "")) {
    return new InputError("content_encoding_invalid", "the request body does not decompress with its Content-Encoding", [{ path: "(body)", message: "corrupt compressed data" }]);
  }
  if (status === 413) return new PayloadTooLargeError("payload_too_large", "the request is too large");
  if (status === 415) return new UnsupportedMediaTypeError("content_type_unsupported", "the request body's media type is not supported");
  return new InputError("bad_request", "the request could not be read");
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
    let problem = err instanceof ClaiimError ? err : fromHttpError(err as HttpError);
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
    // For the access log and the metrics: which problem this response is.
    res.locals.problemCode = problem.code;
    if (problem instanceof RateLimitedError) res.set("Retry-After", String(problem.retryAfterSeconds));
    if (problem.status === 401) res.set("WWW-Authenticate", 'Bearer realm="claiim"');
    if (problem instanceof MethodNotAllowedError) res.set("Allow", problem.allow);
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
