import fs from "node:fs";
import path from "node:path";
import { parseEnv, wholeNumber } from "../lib/env";
import type { WebhookSettings } from "./webhook";

export interface ApprovalConfig {
  /** When the policy names no ttl_seconds. */
  defaultTtlSeconds: number;
  /** No approval stays open longer, whatever the policy asks. */
  maxTtlSeconds: number;
  webhook: WebhookSettings | null;
}

/** The approval service's settings: the configuration, and the bounds CLAIIM sets itself. */
export interface ApprovalSettings extends ApprovalConfig {
  /** How long a closed approval stays in memory after its expiry, so that using it gets its precise reason. */
  keepClosedSeconds: number;
  /** Open approvals one agent may have; beyond, its requests are denied (approval_limit). */
  maxOpenPerAgent: number;
  /** Long-polls waiting at once; beyond, a poll answers at once. */
  maxWaiters: number;
  publicUrl: string;
  userAgent: string;
}

const ENV = {
  CLAIIM_APPROVAL_DEFAULT_TTL_SECONDS: wholeNumber(3600),
  CLAIIM_APPROVAL_MAX_TTL_SECONDS: wholeNumber(86400),
  CLAIIM_APPROVAL_WEBHOOK_TIMEOUT_SECONDS: wholeNumber(10),
};

/** A Standard Webhooks secret: whsec_ and the base64 of 24 to 64 bytes. */
function webhookSecret(env: NodeJS.ProcessEnv, cwd: string): string {
  const file = env.CLAIIM_APPROVAL_WEBHOOK_SECRET_FILE;
  if (env.CLAIIM_APPROVAL_WEBHOOK_SECRET && file) throw new Error("set CLAIIM_APPROVAL_WEBHOOK_SECRET or CLAIIM_APPROVAL_WEBHOOK_SECRET_FILE, not both");
  const secret = (file ? fs.readFileSync(path.resolve(cwd, file), "utf8") : (env.CLAIIM_APPROVAL_WEBHOOK_SECRET ?? "")).trim();
  if (!secret) throw new Error("CLAIIM_APPROVAL_WEBHOOK_URL needs CLAIIM_APPROVAL_WEBHOOK_SECRET (or _FILE): a Standard Webhooks secret, whsec_<base64>");
  const m = /^whsec_([A-Za-z0-9+/]+={0,2})$/.exec(secret);
  const bytes = m ? Buffer.from(m[1], "base64").length : 0;
  if (!m || bytes < 24 || bytes > 64) throw new Error("the approval webhook secret must be whsec_ followed by the base64 of 24 to 64 random bytes (openssl rand -base64 32)");
  return secret;
}

/**
 * CLAIIM_APPROVAL_DEFAULT_TTL_SECONDS, CLAIIM_APPROVAL_MAX_TTL_SECONDS, and the webhook that tells a
 * human an approval waits: CLAIIM_APPROVAL_WEBHOOK_URL, its secret, CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS
 * (the waits before each retry, comma-separated) and CLAIIM_APPROVAL_WEBHOOK_TIMEOUT_SECONDS.
 */
export function approvalConfig(env: NodeJS.ProcessEnv, cwd: string): ApprovalConfig {
  const e = parseEnv(ENV, env);
  const defaultTtlSeconds = e.CLAIIM_APPROVAL_DEFAULT_TTL_SECONDS;
  const maxTtlSeconds = e.CLAIIM_APPROVAL_MAX_TTL_SECONDS;
  if (defaultTtlSeconds > maxTtlSeconds) throw new Error("CLAIIM_APPROVAL_DEFAULT_TTL_SECONDS exceeds CLAIIM_APPROVAL_MAX_TTL_SECONDS");
  const url = env.CLAIIM_APPROVAL_WEBHOOK_URL;
  if (!url) {
    if (env.CLAIIM_APPROVAL_WEBHOOK_SECRET || env.CLAIIM_APPROVAL_WEBHOOK_SECRET_FILE) throw new Error("an approval webhook secret is set but CLAIIM_APPROVAL_WEBHOOK_URL is not");
    return { defaultTtlSeconds, maxTtlSeconds, webhook: null };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("CLAIIM_APPROVAL_WEBHOOK_URL is not a URL");
  }
  if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error("CLAIIM_APPROVAL_WEBHOOK_URL must be http: or https:");
  const retries = (env.CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS ?? "5,30,120,600,1800").split(",").filter((s) => s.trim() !== "");
  const retrySeconds = retries.map(Number);
  if (retrySeconds.some((s) => !Number.isFinite(s) || s < 0) || retrySeconds.length > 20) {
    throw new Error("CLAIIM_APPROVAL_WEBHOOK_RETRY_SECONDS must be at most 20 comma-separated numbers of seconds, e.g. 5,30,120");
  }
  return {
    defaultTtlSeconds,
    maxTtlSeconds,
    webhook: { url, secret: webhookSecret(env, cwd), retrySeconds, timeoutMs: e.CLAIIM_APPROVAL_WEBHOOK_TIMEOUT_SECONDS * 1000, concurrency: 4 },
  };
}
