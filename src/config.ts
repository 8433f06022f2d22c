import { createPrivateKey, createPublicKey } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { RedactionRules, type RedactionRule } from "./chron/redaction";
import { approvalConfig, type ApprovalConfig } from "./approvals/config";
import { chronTrustConfig, type ChronTrustConfig } from "./chron/config";

export type DatabaseKind = "sqlite" | "postgresql";

export interface Config {
  port: number;
  host: string;
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
  chron: { maxBatch: number; checkpointEveryRecords: number; checkpointEverySeconds: number; jsonExportMax: number };
  /** Largest accepted request body, in bytes, for the decision endpoint and for policy uploads. */
  bodyLimits: { default: number; policy: number };
  /** A bundle-signing key kept outside the database; null: CLAIIM keeps its own in the database. */
  bundleSigning: ExternalBundleKeys | null;
  /** How long, and how many, Idempotency-Keys of decisions are remembered. */
  idempotency: { ttlSeconds: number; maxKeys: number };
  /** Human approval: how long approvals stay open, and the webhook that tells a human one waits. */
  approvals: ApprovalConfig;
  /** Chron's signing key (a file, outside the database) and its witnesses. */
  chronTrust: ChronTrustConfig;
}

/**
 * CLAIIM_BUNDLE_SIGNING_KEY_FILE (an EC P-256 private key, PEM) signs bundles, and only it and the
 * public keys of CLAIIM_BUNDLE_TRUSTED_KEYS_FILE (a JWKS) verify them: whoever can write the
 * database, and read it, still cannot sign a bundle CLAIIM would load.
 */
export interface ExternalBundleKeys {
  privateKeyPem: string;
  trusted: Record<string, string>[];
}

export interface OidcSettings {
  issuer: string;
  audience: string;
  jwksUrl: string;
  /** Claim holding the human's roles: an array, or a space-separated string. */
  rolesClaim: string;
  /** Claim holding the slug of the human's organisation, or "*" for all of them. */
  orgClaim: string;
  clockSkewSeconds: number;
  /** Least time between two JWKS fetches (a token with an unknown kid triggers one). */
  jwksCooldownSeconds: number;
  jwksCacheSeconds: number;
}

export function databaseKindOf(url: string): DatabaseKind {
  if (/^postgres(ql)?:\/\//.test(url)) return "postgresql";
  if (url.startsWith("file:")) return "sqlite";
  throw new Error(`DATABASE_URL must start with file: (SQLite) or postgresql:// (PostgreSQL), got ${url.split(":")[0]}:`);
}

function intEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return value;
}

function nonNegativeEnv(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number of seconds, got ${raw}`);
  return value;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new Error(`${name} is required when CLAIIM_OIDC_ISSUER is set`);
  return value;
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
  const dataDir = path.resolve(cwd, env.CLAIIM_DATA_DIR ?? "data");
  const databaseUrl = env.DATABASE_URL ?? `file:${path.join(dataDir, "claiim.db")}`;
  const port = env.PORT === undefined ? 8080 : Number(env.PORT);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`PORT must be a port number, got ${env.PORT}`);
  return {
    port,
    host: env.HOST ?? "127.0.0.1",
    databaseUrl,
    databaseKind: databaseKindOf(databaseUrl),
    dataDir,
    archiveDir: path.resolve(cwd, env.CLAIIM_ARCHIVE_DIR ?? path.join(dataDir, "archives")),
    regoDir: path.resolve(cwd, env.CLAIIM_REGO_DIR ?? "rego"),
    bundleDir: path.resolve(cwd, env.CLAIIM_BUNDLE_DIR ?? "bundles"),
    opaBin: env.OPA_BIN || (fs.existsSync(path.join(cwd, ".tools/bin/opa")) ? path.join(cwd, ".tools/bin/opa") : "opa"),
    issuer: env.CLAIIM_ISSUER ?? "claiim",
    audience: env.CLAIIM_AUDIENCE ?? "claiim",
    agentTokenTtlSeconds: intEnv(env, "CLAIIM_AGENT_TOKEN_TTL_SECONDS", 30 * 24 * 3600),
    accessTokenTtlSeconds: intEnv(env, "CLAIIM_ACCESS_TOKEN_TTL_SECONDS", 300),
    clockSkewSeconds: intEnv(env, "CLAIIM_CLOCK_SKEW_SECONDS", 60),
    keyOverlapSeconds: intEnv(env, "CLAIIM_KEY_OVERLAP_SECONDS", intEnv(env, "CLAIIM_AGENT_TOKEN_TTL_SECONDS", 30 * 24 * 3600)),
    publicUrl: (env.CLAIIM_PUBLIC_URL ?? `http://${env.HOST ?? "127.0.0.1"}:${port || 8080}`).replace(/\/+$/, ""),
    redaction: redactionRules(env, cwd),
    oidc: env.CLAIIM_OIDC_ISSUER
      ? {
          issuer: env.CLAIIM_OIDC_ISSUER,
          audience: required(env, "CLAIIM_OIDC_AUDIENCE"),
          jwksUrl: required(env, "CLAIIM_OIDC_JWKS_URL"),
          rolesClaim: env.CLAIIM_OIDC_ROLES_CLAIM ?? "claiim_roles",
          orgClaim: env.CLAIIM_OIDC_ORG_CLAIM ?? "claiim_org",
          clockSkewSeconds: intEnv(env, "CLAIIM_CLOCK_SKEW_SECONDS", 60),
          jwksCooldownSeconds: nonNegativeEnv(env, "CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS", 30),
          jwksCacheSeconds: intEnv(env, "CLAIIM_OIDC_JWKS_CACHE_SECONDS", 600),
        }
      : null,
    logLevel: env.LOG_LEVEL ?? "info",
    chron: {
      maxBatch: intEnv(env, "CLAIIM_CHRON_MAX_BATCH", 256),
      checkpointEveryRecords: intEnv(env, "CLAIIM_CHECKPOINT_EVERY_RECORDS", 1000),
      checkpointEverySeconds: intEnv(env, "CLAIIM_CHECKPOINT_EVERY_SECONDS", 1),
      jsonExportMax: intEnv(env, "CLAIIM_EXPORT_JSON_MAX_RECORDS", 10000),
    },
    bodyLimits: { default: 64 * 1024, policy: intEnv(env, "CLAIIM_POLICY_MAX_BYTES", 4 * 1024 * 1024) },
    bundleSigning: bundleSigning(env, cwd),
    idempotency: { ttlSeconds: intEnv(env, "CLAIIM_IDEMPOTENCY_TTL_SECONDS", 24 * 3600), maxKeys: intEnv(env, "CLAIIM_IDEMPOTENCY_MAX_KEYS", 100_000) },
    approvals: approvalConfig(env, cwd),
    chronTrust: chronTrustConfig(env, cwd, dataDir),
  };
}
