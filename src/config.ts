import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { z } from "zod";
import type { RedactionRule } from "./chron/redaction";
import type { DatabaseKind } from "./db/database";
import type { OidcSettings } from "./identity/oidc";
import type { ExternalBundleKeys } from "./policy/bundle-signing";
import { bundleSigning, EVALUATION_ENV, evaluationSettings, type EvaluationSettings } from "./policy/config";
import { OPS_ENV, opsSettings, type OpsSettings } from "./ops/config";
import { oneOf, optionalText, parseEnv, text, wholeNumber } from "./lib/env";
import { approvalConfig, type ApprovalConfig } from "./approvals/config";
import { consoleSettings, type ConsoleSettings } from "./console/console-settings";
import { chronTrustConfig, redactionRules, type ChronTrustConfig } from "./chron/config";

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
  // Serving processes on one port (src/cluster/): by default one per core; 1 runs a single process without a cluster.
  CLAIIM_WORKERS: wholeNumber(os.availableParallelism()).refine((n) => n <= 256, "must be a whole number from 1 to 256"),
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
  ...EVALUATION_ENV,
  ...OPS_ENV,
};

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
    evaluation: evaluationSettings(e, cwd, e.CLAIIM_WORKERS),
    ops: opsSettings(e),
    chronTrust: chronTrustConfig(env, cwd, dataDir),
  };
}
