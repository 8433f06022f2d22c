import type { ErrorRequestHandler, RequestHandler } from "express";
import { ClaiimError, InputError, MethodNotAllowedError, NotFoundError, PayloadTooLargeError, RateLimitedError, ServiceUnavailableError, UnsupportedMediaTypeError } from "../lib/errors";
import type { ServerResponse } from "node:http";
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

/** A problem as it is answered: status, headers and RFC 9457 body; `code` for the access log and the metrics (none for a 500). */
export interface ProblemAnswer {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
  code: string | undefined;
}

/**
 * The one place errors become answers: RFC 9457 problem details with a stable `code`. Unknown
 * errors are logged with their stack and answered without it. `instance` is the request's path.
 */
export function problemAnswer(err: unknown, logger: Logger, requestId: string | undefined, instance: string): ProblemAnswer {
  let problem = err instanceof ClaiimError ? err : fromHttpError(err as HttpError);
  if (!problem && isDatabaseError(err)) {
    logger.error("database error", { request_id: requestId, error: (err as Error).message });
    problem = new ServiceUnavailableError("database_unavailable", "the database could not complete the request; nothing was changed by it");
  }
  if (!problem) {
    logger.error("unhandled error", { request_id: requestId, error: (err as Error)?.message, stack: (err as Error)?.stack });
    return {
      status: 500,
      headers: {},
      code: undefined,
      body: {
        type: "urn:claiim:problem:internal_error",
        title: "Internal error",
        status: 500,
        code: "internal_error",
        detail: `an internal error occurred; quote request id ${requestId} to your operator`,
        request_id: requestId,
      },
    };
  }
  const headers: Record<string, string> = {};
  if (problem instanceof RateLimitedError) headers["Retry-After"] = String(problem.retryAfterSeconds);
  if (problem.status === 401) headers["WWW-Authenticate"] = 'Bearer realm="claiim"';
  if (problem instanceof MethodNotAllowedError) headers.Allow = problem.allow;
  return {
    status: problem.status,
    headers,
    code: problem.code,
    body: {
      type: `urn:claiim:problem:${problem.code}`,
      title: problem.title,
      status: problem.status,
      code: problem.code,
      detail: problem.message,
      instance,
      request_id: requestId,
      ...(problem instanceof InputError && problem.errors.length ? { errors: problem.errors } : {}),
      ...problem.extra,
    },
  };
}

/** Sends a problem through a plain response (the hot path); Express's handler below sends the same bytes. */
export function sendProblem(res: ServerResponse, answer: ProblemAnswer): void {
  if (res.headersSent) return void res.end();
  const text = JSON.stringify(answer.body);
  for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
  res.statusCode = answer.status;
  res.setHeader("Content-Type", "application/problem+json; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(text));
  res.end(text);
}

/** Express's error handler: every error of a route, a parser or the router, as a problem. */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const answer = problemAnswer(err, logger, res.locals.requestId as string | undefined, req.originalUrl.split("?")[0]);
    // For the access log and the metrics: which problem this response is.
    res.locals.problemCode = answer.code;
    if (res.headersSent) return void res.end();
    res.set(answer.headers).status(answer.status).type("application/problem+json").json(answer.body);
  };
}
