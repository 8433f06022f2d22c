// The error family. Services throw these; the one error middleware (http/problem.ts) turns them
// into RFC 9457 problem details. `code` is stable and documented (problems.ts, with its one
// status); `message` is for humans. Each class takes only the codes of its own status.
import type { CodeWith, ProblemCode } from "./problems";

export interface FieldError {
  path: string;
  message: string;
}

export abstract class ClaiimError extends Error {
  abstract readonly status: number;
  abstract readonly title: string;
  constructor(
    readonly code: ProblemCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * The base of the problems of one status: it takes only the codes of that status. (Its
 * subclasses below are declared as classes so that each keeps its own name, for `instanceof` and
 * the logs.)
 */
function problemOf<S extends number>(status: S, title: string) {
  return class extends ClaiimError {
    readonly status: S = status;
    readonly title: string = title;
    constructor(code: CodeWith<S>, message: string, extra: Record<string, unknown> = {}) {
      super(code, message, extra);
    }
  };
}

export class InputError extends problemOf(400, "Invalid request") {
  constructor(code: CodeWith<400>, message: string, readonly errors: FieldError[] = [], extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class AuthenticationError extends problemOf(401, "Authentication required") {}

export class NotAllowedError extends problemOf(403, "Not allowed") {}

export class NotFoundError extends problemOf(404, "Not found") {}

export class MethodNotAllowedError extends problemOf(405, "Method not allowed") {
  constructor(code: CodeWith<405>, message: string, readonly allow: string) {
    super(code, message);
  }
}

export class ConflictError extends problemOf(409, "Conflict") {}

export class PayloadTooLargeError extends problemOf(413, "Payload too large") {}

export class UnsupportedMediaTypeError extends problemOf(415, "Unsupported media type") {}

/** The request was well-formed but its content cannot be accepted (e.g. a policy that does not compile). */
export class UnprocessableError extends problemOf(422, "Unprocessable content") {}

/** A rate limit refused the request; `retryAfterSeconds` goes out as Retry-After (RFC 9110 §10.2.3). */
export class RateLimitedError extends problemOf(429, "Too many requests") {
  constructor(code: CodeWith<429>, message: string, readonly retryAfterSeconds: number) {
    super(code, message, { retry_after_seconds: retryAfterSeconds });
  }
}

/** A dependency (database, policy engine) cannot serve the request; nothing was decided. */
export class ServiceUnavailableError extends problemOf(503, "Service unavailable") {}
