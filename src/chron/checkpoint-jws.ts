// A checkpoint's JWS and an export header's signature, checked: pure functions that servers and
// offline verifiers share (they need no Checkpointer, no store and no witness).
import jwt from "jsonwebtoken";
import { chronKeysOf, lookupIn, type ChronKeyLookup } from "./signer";

/** What a checkpoint's JWS says. */
export interface CheckpointClaims {
  sequence: number;
  hash: string;
  timestamp: string;
  count: number;
  /** RFC 6962 Merkle root over the hashes of records 1..sequence. */
  root?: string;
}

/** The key a JWS names, checked: known, and (for a key once kept in the database) within what it may vouch for. */
function keyOf(jws: string, keys: ChronKeyLookup, what: string) {
  const decoded = jwt.decode(jws, { complete: true });
  if (!decoded || typeof decoded.payload === "string") throw new Error(`${what} is not a JWS`);
  const key = decoded.header.kid ? keys(decoded.header.kid) : undefined;
  if (!key) throw new Error(`${what} is signed by an unknown key (kid ${decoded.header.kid ?? "missing"})`);
  return key;
}

/** Checks a checkpoint's signature with the key its kid names; returns what it signs, or throws why not. */
export function verifyCheckpoint(jws: string, keys: ChronKeyLookup): CheckpointClaims {
  const key = keyOf(jws, keys, "checkpoint");
  let claims: CheckpointClaims;
  try {
    claims = jwt.verify(jws, key.publicKey, { algorithms: ["ES256"] }) as unknown as CheckpointClaims;
  } catch (err) {
    throw new Error(`checkpoint signature does not verify: ${(err as Error).message}`);
  }
  if (typeof claims.sequence !== "number" || typeof claims.hash !== "string" || typeof claims.count !== "number") throw new Error("checkpoint signature does not verify: it lacks sequence, hash or count");
  if (key.maxSeq !== null && claims.sequence > key.maxSeq) {
    throw new Error(`checkpoint is signed by key ${key.kid}, which CLAIIM kept in its database and trusts only up to record ${key.maxSeq}`);
  }
  return claims;
}

/** Checks an export header's signature; returns the digest it signs, or throws why not. `lastSeq`: the last record the header covers. */
export function verifyDigestSignature(jws: string, keys: ChronKeyLookup, lastSeq: number | null): string {
  let key;
  try {
    key = keyOf(jws, keys, "the header");
  } catch {
    throw new Error("the header is signed by an unknown key");
  }
  let claims: { header_sha256?: unknown };
  try {
    claims = jwt.verify(jws, key.publicKey, { algorithms: ["ES256"] }) as { header_sha256?: unknown };
  } catch (err) {
    throw new Error(`the header's signature does not verify: ${(err as Error).message}`);
  }
  if (typeof claims.header_sha256 !== "string") throw new Error("the header's signature does not verify: no header_sha256");
  if (key.maxSeq !== null && (lastSeq ?? 0) > key.maxSeq) throw new Error(`the header is signed by key ${key.kid}, which CLAIIM kept in its database and trusts only up to record ${key.maxSeq}`);
  return claims.header_sha256;
}

/** The Chron keys of a JWKS document, for verifiers that hold no server (see chronKeysOf). */
export function jwksKeys(jwks: { keys?: unknown }): ChronKeyLookup {
  return lookupIn(chronKeysOf(jwks));
}
