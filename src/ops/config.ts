// Operating CLAIIM, from the environment: the metrics listener, traces (OpenTelemetry's own
// variables), rate limits, the proxies trusted, and when a stuck Chron makes CLAIIM not ready.
// Parsed with the rest of the environment, so that every wrong variable is named at once (config.ts).
import { z } from "zod";
import { optionalText, text, wholeNumber } from "../lib/env";
import type { RateLimitSettings } from "./rate-limits";
import type { TracingSettings } from "./tracing";

export interface OpsSettings {
  /** A second listener serving only /metrics, without a credential (e.g. 127.0.0.1:9464); null: /metrics on the API's port, for admin and metrics keys. */
  metricsAddress: { host: string; port: number } | null;
  tracing: TracingSettings;
  rateLimits: RateLimitSettings;
  /** Express's "trust proxy": which proxies' X-Forwarded-For names the client whose address the rate limits count. */
  trustProxy: boolean | number | string;
  /** A Chron commit running longer, or failing more recently, than this makes CLAIIM not ready. */
  chronStuckSeconds: number;
}

export const OPS_ENV = {
  CLAIIM_METRICS_ADDRESS: z
    .string()
    .regex(/^(\[[0-9a-fA-F:.]+\]|[^\s:/]+):\d{1,5}$/, "must be host:port, e.g. 127.0.0.1:9464")
    .optional(),
  CLAIIM_RATE_LIMIT_WINDOW_SECONDS: wholeNumber(60),
  CLAIIM_RATE_LIMIT_TOKEN_PER_CLIENT: wholeNumber(60, 0),
  CLAIIM_RATE_LIMIT_TOKEN_PER_ADDRESS: wholeNumber(600, 0),
  CLAIIM_RATE_LIMIT_FAILURES_PER_ADDRESS: wholeNumber(60, 0),
  CLAIIM_RATE_LIMIT_FAILURES_PER_CLIENT: wholeNumber(20, 0),
  CLAIIM_TRUST_PROXY: optionalText(),
  CLAIIM_CHRON_STUCK_SECONDS: wholeNumber(15),
  // OpenTelemetry's own variables (https://opentelemetry.io/docs/specs/otel/protocol/exporter/).
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: optionalText(),
  OTEL_EXPORTER_OTLP_ENDPOINT: optionalText(),
  OTEL_EXPORTER_OTLP_HEADERS: optionalText(),
  OTEL_SERVICE_NAME: text("claiim"),
  OTEL_TRACES_SAMPLER_ARG: z
    .string()
    .regex(/^(0(\.\d+)?|1(\.0*)?)$/, "must be a ratio from 0 to 1")
    .transform(Number)
    .optional(),
};

/** Express's trust proxy: true/false, a number of hops, or addresses and subnets (e.g. "loopback, 10.0.0.0/8"). */
function trustProxy(value: string | undefined): boolean | number | string {
  if (value === undefined || value === "false") return false;
  if (value === "true") return true;
  return /^\d+$/.test(value) ? Number(value) : value;
}

/** OTEL_EXPORTER_OTLP_HEADERS: key=value pairs separated by commas, values percent-encoded. */
function otlpHeaders(value: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of (value ?? "").split(",")) {
    const i = pair.indexOf("=");
    if (i <= 0) continue;
    headers[decodeURIComponent(pair.slice(0, i).trim())] = decodeURIComponent(pair.slice(i + 1).trim());
  }
  return headers;
}

function hostPort(value: string | undefined): { host: string; port: number } | null {
  if (!value) return null;
  const i = value.lastIndexOf(":");
  const port = Number(value.slice(i + 1));
  if (port > 65535) throw new Error("configuration: CLAIIM_METRICS_ADDRESS has a port above 65535");
  return { host: value.slice(0, i).replace(/^\[(.*)\]$/, "$1"), port };
}

export function opsSettings(e: z.infer<z.ZodObject<typeof OPS_ENV>>): OpsSettings {
  return {
    metricsAddress: hostPort(e.CLAIIM_METRICS_ADDRESS),
    tracing: {
      endpoint: e.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (e.OTEL_EXPORTER_OTLP_ENDPOINT ? `${e.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces` : null),
      headers: otlpHeaders(e.OTEL_EXPORTER_OTLP_HEADERS),
      serviceName: e.OTEL_SERVICE_NAME,
      sampleRatio: e.OTEL_TRACES_SAMPLER_ARG ?? 1,
    },
    rateLimits: {
      windowSeconds: e.CLAIIM_RATE_LIMIT_WINDOW_SECONDS,
      tokenPerClient: e.CLAIIM_RATE_LIMIT_TOKEN_PER_CLIENT,
      tokenPerAddress: e.CLAIIM_RATE_LIMIT_TOKEN_PER_ADDRESS,
      failuresPerAddress: e.CLAIIM_RATE_LIMIT_FAILURES_PER_ADDRESS,
      failuresPerClient: e.CLAIIM_RATE_LIMIT_FAILURES_PER_CLIENT,
    },
    trustProxy: trustProxy(e.CLAIIM_TRUST_PROXY),
    chronStuckSeconds: e.CLAIIM_CHRON_STUCK_SECONDS,
  };
}
