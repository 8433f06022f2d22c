import { AsyncLocalStorage } from "node:async_hooks";
import type { Writable } from "node:stream";
import winston from "winston";

export type Logger = winston.Logger;

/** The request a piece of work belongs to; every log line written within it carries its id. */
const requestContext = new AsyncLocalStorage<{ requestId: string }>();

export function runInRequest<T>(requestId: string, fn: () => T): T {
  return requestContext.run({ requestId }, fn);
}

/** For work shared by many requests (a Chron batch), which must not be logged as one of them. */
export function runOutsideRequests<T>(fn: () => T): T {
  return requestContext.exit(fn);
}

// Keys whose values must never reach a log line, wherever they appear in the metadata.
const SECRET_KEYS = /^(authorization|token|access_token|credential|secret|password|private_?key.*|api_?key|client_secret|cookie)$/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.test(key)) info[key] = "[redacted]";
  }
  const ctx = requestContext.getStore();
  if (ctx && info.request_id === undefined) info.request_id = ctx.requestId;
  return info;
});

/** `level` is a winston level, or "silent" for none at all. Logs go to the console unless a stream is given. */
export function createLogger(level: string, stream?: Writable): Logger {
  return winston.createLogger({
    level: level === "silent" ? "error" : level,
    silent: level === "silent",
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: "claiim" },
    transports: [stream ? new winston.transports.Stream({ stream }) : new winston.transports.Console({ stderrLevels: ["error", "warn"] })],
  });
}
