import { createHash } from "node:crypto";
import canonicalizeJson from "canonicalize";

/** RFC 8785 (JSON Canonicalization Scheme) text of a JSON value. */
export function canonicalize(value: unknown): string {
  const text = canonicalizeJson(value);
  if (text === undefined) throw new Error("value has no canonical JSON form");
  return text;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
