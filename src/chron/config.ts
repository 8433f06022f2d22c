import fs from "node:fs";
import path from "node:path";
import { LocalKeySigner, readTrustedKeys, type ChronKeyFiles } from "./signer";
import type { RemoteWitnessSettings } from "./remote-witness";
import { RedactionRules, type RedactionRule } from "./redaction";

/** Where Chron's signing key lives, and where its signed tree heads are witnessed. */
export interface ChronTrustConfig {
  keys: ChronKeyFiles;
  /** CLAIIM_WITNESS_DIR: the local witness log's folder, outside the database. */
  witnessDir: string;
  /** CLAIIM_WITNESS_URL and what goes with it; null: no remote witness. */
  remoteWitness: RemoteWitnessSettings | null;
}

function positive(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive whole number of seconds, got ${raw}`);
  return value;
}

/**
 * CLAIIM_CHRON_SIGNING_KEY_FILE (an EC P-256 private key, PEM; default: chron-signing-key.pem in
 * the data folder, created at the first start), CLAIIM_CHRON_TRUSTED_KEYS_FILE (a JWKS of earlier
 * Chron public keys that still verify; default: chron-trusted-keys.json beside it),
 * CLAIIM_WITNESS_DIR (default: witness/ in the data folder), CLAIIM_WITNESS_URL with
 * CLAIIM_WITNESS_TOKEN (or _FILE), CLAIIM_WITNESS_RETRY_SECONDS and CLAIIM_WITNESS_TIMEOUT_SECONDS.
 */
export function chronTrustConfig(env: NodeJS.ProcessEnv, cwd: string, dataDir: string): ChronTrustConfig {
  const keyFileGiven = Boolean(env.CLAIIM_CHRON_SIGNING_KEY_FILE);
  const keyFile = path.resolve(cwd, env.CLAIIM_CHRON_SIGNING_KEY_FILE || path.join(dataDir, "chron-signing-key.pem"));
  if (keyFileGiven) {
    if (!fs.existsSync(keyFile)) throw new Error(`CLAIIM_CHRON_SIGNING_KEY_FILE names ${keyFile}, which does not exist`);
    try {
      new LocalKeySigner(fs.readFileSync(keyFile, "utf8"));
    } catch (err) {
      throw new Error(`CLAIIM_CHRON_SIGNING_KEY_FILE must hold an EC P-256 private key (PEM): ${(err as Error).message}`);
    }
  }
  const trustedKeysFile = path.resolve(cwd, env.CLAIIM_CHRON_TRUSTED_KEYS_FILE || path.join(path.dirname(keyFile), "chron-trusted-keys.json"));
  if (env.CLAIIM_CHRON_TRUSTED_KEYS_FILE) {
    if (!fs.existsSync(trustedKeysFile)) throw new Error(`CLAIIM_CHRON_TRUSTED_KEYS_FILE names ${trustedKeysFile}, which does not exist`);
    readTrustedKeys(trustedKeysFile);
  }
  const witnessDir = path.resolve(cwd, env.CLAIIM_WITNESS_DIR || path.join(dataDir, "witness"));
  return { keys: { keyFile, keyFileGiven, trustedKeysFile }, witnessDir, remoteWitness: remoteWitness(env, cwd) };
}

function remoteWitness(env: NodeJS.ProcessEnv, cwd: string): RemoteWitnessSettings | null {
  const url = env.CLAIIM_WITNESS_URL;
  if (env.CLAIIM_WITNESS_TOKEN && env.CLAIIM_WITNESS_TOKEN_FILE) throw new Error("set CLAIIM_WITNESS_TOKEN or CLAIIM_WITNESS_TOKEN_FILE, not both");
  const token = (env.CLAIIM_WITNESS_TOKEN_FILE ? fs.readFileSync(path.resolve(cwd, env.CLAIIM_WITNESS_TOKEN_FILE), "utf8") : (env.CLAIIM_WITNESS_TOKEN ?? "")).trim() || null;
  if (!url) {
    if (token) throw new Error("a witness token is set but CLAIIM_WITNESS_URL is not");
    return null;
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("CLAIIM_WITNESS_URL is not a URL");
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error("CLAIIM_WITNESS_URL must be http: or https:");
  const retrySeconds = (env.CLAIIM_WITNESS_RETRY_SECONDS ?? "1,2,5,10,30,60").split(",").filter((s) => s.trim() !== "").map(Number);
  if (retrySeconds.length === 0 || retrySeconds.length > 20 || retrySeconds.some((s) => !Number.isFinite(s) || s < 0)) {
    throw new Error("CLAIIM_WITNESS_RETRY_SECONDS must be 1 to 20 comma-separated numbers of seconds, e.g. 1,5,30 (the last repeats)");
  }
  return { url, token, retrySeconds, timeoutSeconds: positive(env, "CLAIIM_WITNESS_TIMEOUT_SECONDS", 10) };
}

/** CLAIIM_REDACTION_RULES (JSON) or CLAIIM_REDACTION_FILE (a JSON file): a list of {path, op, value?}. */
export function redactionRules(env: NodeJS.ProcessEnv, cwd: string): RedactionRule[] {
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
