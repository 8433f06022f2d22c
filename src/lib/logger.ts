import winston from "winston";

export type Logger = winston.Logger;

// Keys whose values must never reach a log line, wherever they appear in the metadata.
const SECRET_KEYS = /^(authorization|token|access_token|credential|secret|password|private_?key.*|api_?key|client_secret|cookie)$/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.test(key)) info[key] = "[redacted]";
  }
  return info;
});

/** `level` is a winston level, or "silent" for none at all. */
export function createLogger(level: string): Logger {
  return winston.createLogger({
    level: level === "silent" ? "error" : level,
    silent: level === "silent",
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: "claiim" },
    transports: [new winston.transports.Console({ stderrLevels: ["error", "warn"] })],
  });
}
