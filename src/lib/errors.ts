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

export class InputError extends ClaiimError {
  readonly status = 400;
  readonly title = "Invalid request";
  constructor(code: CodeWith<400>, message: string, readonly errors: FieldError[] = [], extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class AuthenticationError extends ClaiimError {
  readonly status = 401;
  readonly title = "Authentication required";
  constructor(code: CodeWith<401>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class NotAllowedError extends ClaiimError {
  readonly status = 403;
  readonly title = "Not allowed";
  constructor(code: CodeWith<403>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class NotFoundError extends ClaiimError {
  readonly status = 404;
  readonly title = "Not found";
  constructor(code: CodeWith<404>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class MethodNotAllowedError extends ClaiimError {
  readonly status = 405;
  readonly title = "Method not allowed";
  constructor(code: CodeWith<405>, message: string, readonly allow: string) {
    super(code, message);
  }
}

export class ConflictError extends ClaiimError {
  readonly status = 409;
  readonly title = "Conflict";
  constructor(code: CodeWith<409>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class PayloadTooLargeError extends ClaiimError {
  readonly status = 413;
  readonly title = "Payload too large";
  constructor(code: CodeWith<413>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

export class UnsupportedMediaTypeError extends ClaiimError {
  readonly status = 415;
  readonly title = "Unsupported media type";
  constructor(code: CodeWith<415>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

/** The request was well-formed but its content cannot be accepted (e.g. a policy that does not compile). */
export class UnprocessableError extends ClaiimError {
  readonly status = 422;
  readonly title = "Unprocessable content";
  constructor(code: CodeWith<422>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}

/** A rate limit refused the request; `retryAfterSeconds` goes out as Retry-After (RFC 9110 §10.2.3). */
export class RateLimitedError extends ClaiimError {
  readonly status = 429;
  readonly title = "Too many requests";
  constructor(code: CodeWith<429>, message: string, readonly retryAfterSeconds: number) {
    super(code, message, { retry_after_seconds: retryAfterSeconds });
  }
}

/** A dependency (database, policy engine) cannot serve the request; nothing was decided. */
export class ServiceUnavailableError extends ClaiimError {
  readonly status = 503;
  readonly title = "Service unavailable";
  constructor(code: CodeWith<503>, message: string, extra: Record<string, unknown> = {}) {
    super(code, message, extra);
  }
}
