import { createPrivateKey, createPublicKey } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";
import { RedactionRules, type RedactionRule } from "./chron/redaction";
import type { DatabaseKind } from "./db/database";
import type { OidcSettings } from "./identity/oidc";
import type { ExternalBundleKeys } from "./policy/bundle-signing";
import { oneOf, optionalText, parseEnv, text, wholeNumber } from "./lib/env";
import { approvalConfig, type ApprovalConfig } from "./approvals/config";
import { consoleSettings, type ConsoleSettings } from "./console/console-settings";
import type { RateLimitSettings } from "./ops/rate-limits";
import type { TracingSettings } from "./ops/tracing";
import { chronTrustConfig, type ChronTrustConfig } from "./chron/config";

export interface Config {
  port: number;
  host: string;
  /** Serving processes on the one port (CLAIIM_WORKERS, node:cluster); 1: a single process, no cluster. */
  workers: number;
  databaseUrl: string;
  databaseKind: DatabaseKind;
  /** Where the embedded database, the bootstrap credential and other local state live. */
  dataDir: string;
  /** Where retention writes Chron archives. */
  archiveDir: string;
  regoDir: string;
  bundleDir: string;
  /** OPA_BIN, else the CLI that `make setup` builds into .tools/bin, else `opa` on the PATH. */
  opaBin: string;
  /** `iss` of the tokens CLAIIM signs, and the `aud` they are valid for. */
  issuer: string;
  audience: string;
  agentTokenTtlSeconds: number;
  /** Lifetime of access tokens from the OAuth token endpoint. */
  accessTokenTtlSeconds: number;
  /** Clock difference tolerated in client assertions. */
  clockSkewSeconds: number;
  /** How long a rotated-out signing key keeps verifying. */
  keyOverlapSeconds: number;
  /** The URL clients reach CLAIIM at; its /oauth/token is an accepted client-assertion audience. */
  publicUrl: string;
  /** Redaction of decision records before they are hashed and stored. */
  redaction: RedactionRule[];
  /** Humans signing in with the organisation's own identity provider; null when not configured. */
  oidc: OidcSettings | null;
  logLevel: string;
  chron: { maxBatch: number; checkpointEveryRecords: number; checkpointEverySeconds: number; jsonExportMax: number; coordinatorLeaseMs: number };
  /** How the changes other processes commit reach this one, and how far behind it may be before it answers 503 state_stale. */
  sync: { pollMs: number; maxLagMs: number };
  /** Largest accepted request body, in bytes, for the decision endpoint and for policy uploads. */
  bodyLimits: { default: number; policy: number };
  /** A bundle-signing key kept outside the database; null: CLAIIM keeps its own in the database. */
  bundleSigning: ExternalBundleKeys | null;
  /** How long a stop waits for requests in flight before it cuts their connections. */
  shutdownTimeoutSeconds: number;
  /**
   * How long, at the start of a stop, CLAIIM goes on serving while readiness answers 503, so that
   * load balancers that poll /readyz send no more before the listener closes (within the timeout).
   */
  shutdownDelaySeconds: number;
  /** How long, and how many, Idempotency-Keys of decisions are remembered. */
  idempotency: { ttlSeconds: number; maxKeys: number };
  /** Human approval: how long approvals stay open, and the webhook that tells a human one waits. */
  approvals: ApprovalConfig;
  /** The web console at /console. */
  console: ConsoleSettings;
  /** Bounds of every policy evaluation (decisions, shadow, replay, the budget gate), and the workers that run them. */
  evaluation: EvaluationSettings;
  /** Operating CLAIIM: metrics, traces, rate limits, readiness. */
  ops: OpsSettings;
  /** Chron's signing key (a file, outside the database) and its witnesses. */
  chronTrust: ChronTrustConfig;
}

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

export interface EvaluationSettings {
  /** Deadline of one evaluation, in milliseconds. */
  timeoutMs: number;
  /** WebAssembly memory maximum of a policy, and heap limit of an evaluation worker, in bytes. */
  maxMemoryBytes: number;
  /** Evaluation worker threads. */
  workers: number;
  /** A shadow or a replay is stopped after this many of its evaluations exceeded the bounds. */
  tripsToStop: number;
  /** How many of the last recorded decisions the budget gate evaluates a candidate on. */
  budgetSamples: number;
  /** OPA's builtin module (built by make setup); null: look in .tools/. */
  referenceModule: string | null;
}


export function databaseKindOf(url: string): DatabaseKind {
  if (/^postgres(ql)?:\/\//.test(url)) return "postgresql";
  if (url.startsWith("file:")) return "sqlite";
  throw new Error(`DATABASE_URL must start with file: (SQLite) or postgresql:// (PostgreSQL), got ${url.split(":")[0]}:`);
}

/**
 * Every variable CLAIIM reads, declared once with its type and default (README: Configuration).
 * Parsed with zod at start-up; every wrong one is named in one error.
 */
const ENV = {
  PORT: wholeNumber(8080, 0).refine((p) => p <= 65535, "must be a port number (0 to 65535)"),
  HOST: text("127.0.0.1"),
  // Serving processes on one port (src/cluster/); 1 runs a single process without a cluster.
  // WARNING: 1 by default, not one per core, until two guarantees hold across processes: a retry
  // with the same Idempotency-Key that lands on another worker is decided and recorded again, and
  // a long-poll on one worker does not wake when the approval is decided through another (see
  // test/e2e/worker-mode.test.ts and the Python SDK's tests).
  CLAIIM_WORKERS: wholeNumber(1).refine((n) => n <= 256, "must be a whole number from 1 to 256"),
  DATABASE_URL: optionalText(),
  CLAIIM_DATA_DIR: text("data"),
  CLAIIM_ARCHIVE_DIR: optionalText(),
  CLAIIM_REGO_DIR: text("rego"),
  CLAIIM_BUNDLE_DIR: text("bundles"),
  OPA_BIN: optionalText(),
  CLAIIM_ISSUER: text("claiim"),
  CLAIIM_AUDIENCE: text("claiim"),
  CLAIIM_AGENT_TOKEN_TTL_SECONDS: wholeNumber(30 * 24 * 3600),
  CLAIIM_ACCESS_TOKEN_TTL_SECONDS: wholeNumber(300),
  CLAIIM_CLOCK_SKEW_SECONDS: wholeNumber(60),
  CLAIIM_KEY_OVERLAP_SECONDS: z.string().regex(/^\d+$/, "must be a whole number of seconds").transform(Number).optional(),
  CLAIIM_PUBLIC_URL: optionalText(),
  CLAIIM_OIDC_ISSUER: optionalText(),
  CLAIIM_OIDC_AUDIENCE: optionalText(),
  CLAIIM_OIDC_JWKS_URL: optionalText(),
  CLAIIM_OIDC_ROLES_CLAIM: text("claiim_roles"),
  CLAIIM_OIDC_ORG_CLAIM: text("claiim_org"),
  CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS: wholeNumber(30, 0),
  CLAIIM_OIDC_JWKS_CACHE_SECONDS: wholeNumber(600),
  LOG_LEVEL: oneOf(["silent", "error", "warn", "info", "http", "verbose", "debug", "silly"], "info"),
  CLAIIM_CHRON_MAX_BATCH: wholeNumber(256),
  // How another process's changes reach this one (ChronFollower); the poll defaults to 50 ms on SQLite, 200 ms on PostgreSQL (which also notifies).
  CLAIIM_SYNC_POLL_MS: z.string().regex(/^\d+$/, "must be a whole number, at least 5").transform(Number).refine((n) => n >= 5 && n <= 60_000, "must be a whole number from 5 to 60000").optional(),
  CLAIIM_SYNC_MAX_LAG_MS: wholeNumber(1000, 100),
  CLAIIM_CHECKPOINT_EVERY_RECORDS: wholeNumber(1000),
  CLAIIM_CHECKPOINT_EVERY_SECONDS: wholeNumber(1),
  // How long the Chron coordinator's lease lasts unrenewed: a dead holder's work moves within it and a third more.
  CLAIIM_COORDINATOR_LEASE_MS: wholeNumber(5000).refine((ms) => ms >= 300, "must be at least 300 ms"),
  CLAIIM_EXPORT_JSON_MAX_RECORDS: wholeNumber(10000),
  CLAIIM_POLICY_MAX_BYTES: wholeNumber(4 * 1024 * 1024),
  CLAIIM_IDEMPOTENCY_TTL_SECONDS: wholeNumber(24 * 3600),
  CLAIIM_IDEMPOTENCY_MAX_KEYS: wholeNumber(100_000),
  CLAIIM_SHUTDOWN_TIMEOUT_SECONDS: wholeNumber(30),
  CLAIIM_SHUTDOWN_DELAY_SECONDS: wholeNumber(0, 0),
  CLAIIM_EVAL_TIMEOUT_MS: wholeNumber(100),
  CLAIIM_EVAL_MAX_MEMORY_MB: wholeNumber(256),
  CLAIIM_EVAL_WORKERS: wholeNumber(2),
  CLAIIM_EVAL_TRIPS_TO_STOP: wholeNumber(3),
  CLAIIM_BUDGET_SAMPLES: wholeNumber(1000, 0),
  CLAIIM_OPA_BUILTINS_WASM: optionalText(),
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

function bundleSigning(env: NodeJS.ProcessEnv, cwd: string): ExternalBundleKeys | null {
  if (!env.CLAIIM_BUNDLE_SIGNING_KEY_FILE) {
    if (env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE) throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE needs CLAIIM_BUNDLE_SIGNING_KEY_FILE");
    return null;
  }
  const privateKeyPem = fs.readFileSync(path.resolve(cwd, env.CLAIIM_BUNDLE_SIGNING_KEY_FILE), "utf8");
  let curve: string | undefined;
  try {
    curve = createPrivateKey(privateKeyPem).asymmetricKeyDetails?.namedCurve;
  } catch {
    throw new Error("CLAIIM_BUNDLE_SIGNING_KEY_FILE does not hold a PEM private key");
  }
  if (curve !== "prime256v1") throw new Error("CLAIIM_BUNDLE_SIGNING_KEY_FILE must hold an EC P-256 key (ES256)");
  if (!env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE) return { privateKeyPem, trusted: [] };
  let trusted: Record<string, string>[];
  try {
    trusted = (JSON.parse(fs.readFileSync(path.resolve(cwd, env.CLAIIM_BUNDLE_TRUSTED_KEYS_FILE), "utf8")) as { keys: Record<string, string>[] }).keys;
    for (const jwk of trusted) createPublicKey({ key: jwk, format: "jwk" });
  } catch {
    throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE must be a JWKS ({\"keys\": [...]}) of EC P-256 public keys");
  }
  if (!Array.isArray(trusted) || trusted.some((k) => k.kty !== "EC" || k.crv !== "P-256" || "d" in k)) {
    throw new Error("CLAIIM_BUNDLE_TRUSTED_KEYS_FILE must be a JWKS of EC P-256 public keys, without private parts");
  }
  return { privateKeyPem, trusted };
}

/** CLAIIM_REDACTION_RULES (JSON) or CLAIIM_REDACTION_FILE (a JSON file): a list of {path, op, value?}. */
function redactionRules(env: NodeJS.ProcessEnv, cwd: string): RedactionRule[] {
  const text = env.CLAIIM_REDACTION_RULES ?? (env.CLAIIM_REDACTION_FILE ? fs.readFileSync(path.resolve(cwd, env.CLAIIM_REDACTION_FILE), "utf8") : "[]");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error("the redaction rules are not valid JSON");
  }
  const result = RedactionRules.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new Error(`redaction rule ${issue.path.join(".")}: ${issue.message}`);
  }
  return result.data;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const e = parseEnv(ENV, env);
  const dataDir = path.resolve(cwd, e.CLAIIM_DATA_DIR);
  const databaseUrl = e.DATABASE_URL ?? `file:${path.join(dataDir, "claiim.db")}`;
  if (e.CLAIIM_OIDC_ISSUER && (!e.CLAIIM_OIDC_AUDIENCE || !e.CLAIIM_OIDC_JWKS_URL)) {
    throw new Error("configuration: CLAIIM_OIDC_AUDIENCE and CLAIIM_OIDC_JWKS_URL are required when CLAIIM_OIDC_ISSUER is set");
  }
  return {
    port: e.PORT,
    host: e.HOST,
    workers: e.CLAIIM_WORKERS,
    databaseUrl,
    databaseKind: databaseKindOf(databaseUrl),
    dataDir,
    archiveDir: path.resolve(cwd, e.CLAIIM_ARCHIVE_DIR ?? path.join(dataDir, "archives")),
    regoDir: path.resolve(cwd, e.CLAIIM_REGO_DIR),
    bundleDir: path.resolve(cwd, e.CLAIIM_BUNDLE_DIR),
    opaBin: e.OPA_BIN ?? (fs.existsSync(path.join(cwd, ".tools/bin/opa")) ? path.join(cwd, ".tools/bin/opa") : "opa"),
    issuer: e.CLAIIM_ISSUER,
    audience: e.CLAIIM_AUDIENCE,
    agentTokenTtlSeconds: e.CLAIIM_AGENT_TOKEN_TTL_SECONDS,
    accessTokenTtlSeconds: e.CLAIIM_ACCESS_TOKEN_TTL_SECONDS,
    clockSkewSeconds: e.CLAIIM_CLOCK_SKEW_SECONDS,
    keyOverlapSeconds: e.CLAIIM_KEY_OVERLAP_SECONDS ?? e.CLAIIM_AGENT_TOKEN_TTL_SECONDS,
    publicUrl: (e.CLAIIM_PUBLIC_URL ?? `http://${e.HOST}:${e.PORT || 8080}`).replace(/\/+$/, ""),
    redaction: redactionRules(env, cwd),
    oidc: e.CLAIIM_OIDC_ISSUER
      ? {
          issuer: e.CLAIIM_OIDC_ISSUER,
          audience: e.CLAIIM_OIDC_AUDIENCE!,
          jwksUrl: e.CLAIIM_OIDC_JWKS_URL!,
          rolesClaim: e.CLAIIM_OIDC_ROLES_CLAIM,
          orgClaim: e.CLAIIM_OIDC_ORG_CLAIM,
          clockSkewSeconds: e.CLAIIM_CLOCK_SKEW_SECONDS,
          jwksCooldownSeconds: e.CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS,
          jwksCacheSeconds: e.CLAIIM_OIDC_JWKS_CACHE_SECONDS,
        }
      : null,
    logLevel: e.LOG_LEVEL,
    chron: {
      maxBatch: e.CLAIIM_CHRON_MAX_BATCH,
      checkpointEveryRecords: e.CLAIIM_CHECKPOINT_EVERY_RECORDS,
      checkpointEverySeconds: e.CLAIIM_CHECKPOINT_EVERY_SECONDS,
      jsonExportMax: e.CLAIIM_EXPORT_JSON_MAX_RECORDS,
      coordinatorLeaseMs: e.CLAIIM_COORDINATOR_LEASE_MS,
    },
    sync: { pollMs: e.CLAIIM_SYNC_POLL_MS ?? (databaseKindOf(databaseUrl) === "sqlite" ? 50 : 200), maxLagMs: e.CLAIIM_SYNC_MAX_LAG_MS },
    bodyLimits: { default: 64 * 1024, policy: e.CLAIIM_POLICY_MAX_BYTES },
    bundleSigning: bundleSigning(env, cwd),
    idempotency: { ttlSeconds: e.CLAIIM_IDEMPOTENCY_TTL_SECONDS, maxKeys: e.CLAIIM_IDEMPOTENCY_MAX_KEYS },
    shutdownTimeoutSeconds: e.CLAIIM_SHUTDOWN_TIMEOUT_SECONDS,
    shutdownDelaySeconds: e.CLAIIM_SHUTDOWN_DELAY_SECONDS,
    approvals: approvalConfig(env, cwd),
    console: consoleSettings(env, cwd),
    evaluation: {
      timeoutMs: e.CLAIIM_EVAL_TIMEOUT_MS,
      maxMemoryBytes: e.CLAIIM_EVAL_MAX_MEMORY_MB * 1024 * 1024,
      workers: e.CLAIIM_EVAL_WORKERS,
      tripsToStop: e.CLAIIM_EVAL_TRIPS_TO_STOP,
      budgetSamples: e.CLAIIM_BUDGET_SAMPLES,
      referenceModule: e.CLAIIM_OPA_BUILTINS_WASM ? path.resolve(cwd, e.CLAIIM_OPA_BUILTINS_WASM) : null,
    },
    ops: {
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
    },
    chronTrust: chronTrustConfig(env, cwd, dataDir),
  };
}
