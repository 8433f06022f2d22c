import { hash } from "node:crypto";
import canonicalizeJson from "canonicalize";
import { jsonDepth } from "./text";

/**
 * The deepest value canonicalize() takes. It lies far above MAX_JSON_DEPTH (what requests may
 * carry) and far below what the recursive canonicaliser's stack allows, so that anything CLAIIM
 * stores canonicalises, and a hostile file given to a verifier is refused instead of crashing it.
 */
export const MAX_CANONICAL_DEPTH = 256;

export class CanonicalDepthError extends Error {}

/** RFC 8785 (JSON Canonicalization Scheme) text of a JSON value. */
export function canonicalize(value: unknown): string {
  if (jsonDepth(value, MAX_CANONICAL_DEPTH) > MAX_CANONICAL_DEPTH) throw new CanonicalDepthError(`value is nested deeper than ${MAX_CANONICAL_DEPTH} levels`);
  const text = canonicalizeJson(value);
  if (text === undefined) throw new Error("value has no canonical JSON form");
  return text;
}

export function sha256Hex(data: string | Uint8Array): string {
  // One-shot: a microsecond less than a Hash object, for every record sealed and verified.
  return hash("sha256", data, "hex");
}
