import { createHash, randomBytes } from "node:crypto";

/** API keys are opaque: `claiim_<prefix>_<secret>`; only the hash of the whole is stored. */
export const API_KEY_PREFIX = "claiim_";

export function newApiKeySecret(): { prefix: string; secret: string } {
  const prefix = randomBytes(6).toString("hex");
  return { prefix, secret: `${API_KEY_PREFIX}${prefix}_${randomBytes(32).toString("base64url")}` };
}

/** The stored form of a secret (API keys, OAuth client secrets): its SHA-256, hex. */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret).digest("hex");
}
