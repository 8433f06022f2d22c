import { createHmac, createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, sign as ecdsaSign, type KeyObject } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { jwkThumbprint } from "../keys/signing-keys";

/** A public key that verifies Chron's signatures (checkpoints, tree heads, export headers). */
export interface ChronVerifyingKey {
  kid: string;
  alg: "ES256";
  publicKey: KeyObject;
  publicJwk: Record<string, string>;
  /**
   * The highest record this key may vouch for; null: any. A key CLAIIM kept in its database
   * before Chron keys moved to a file is trusted only up to where it stopped signing: whoever
   * can read the database may hold it, so what it signs beyond that point proves nothing.
   */
  maxSeq: number | null;
}

/** Finds the key a signature names; undefined when it is not trusted. */
export type ChronKeyLookup = (kid: string) => ChronVerifyingKey | undefined;

/**
 * What Chron needs of its signing key, and nothing more, so that a KMS or HSM can hold it: sign
 * bytes (ES256), list the public keys that verify, and tag records. A KMS adapter signs with the
 * service's asymmetric key and tags with an HMAC key it generated there and holds unwrapped in
 * memory; Chron itself does not change.
 */
export interface ChronSigner {
  /** The kid of the key that signs now (RFC 7638 thumbprint). */
  readonly kid: string;
  /** ES256 over `data`: the signature as JWS wants it (IEEE P1363, r || s). */
  sign(data: Uint8Array): Promise<Uint8Array>;
  /** Every key that verifies: the signing key first, then earlier ones still trusted. */
  publicKeys(): ChronVerifyingKey[];
  /**
   * `<first 8 characters of kid>:<MAC of the record hash>` under a secret only the holder of the
   * signing key has (see TagVerdict). Every record
   * CLAIIM writes carries one, so that a record after the last signed tree head is known to be
   * CLAIIM's, not one a database administrator appended. Synchronous: it is on the commit path.
   */
  tag(recordHash: string): string;
}

/** Length of a record tag's MAC in hex: HMAC-SHA256 truncated to 128 bits (RFC 2104 §5). */
export const TAG_HEX = 32;

/**
 * What a record's tag says of it: `valid` (CLAIIM wrote it, under the key it signs with now),
 * `invalid` (it claims that key, but the MAC does not match the record's hash: the record was
 * rewritten, or the row was not written by CLAIIM), `other_key` (tagged under an earlier key,
 * which cannot be checked any more: the signed tree heads vouch for such records), `none`.
 */
export type TagVerdict = "valid" | "invalid" | "other_key" | "none";

export function tagVerdict(tag: string | null, recordHash: string, signer: Pick<ChronSigner, "kid" | "tag">): TagVerdict {
  if (tag === null) return "none";
  if (!tag.startsWith(`${signer.kid.slice(0, 8)}:`)) return /^[A-Za-z0-9_-]{8}:[0-9a-f]{32}$/.test(tag) ? "other_key" : "invalid";
  return tag === signer.tag(recordHash) ? "valid" : "invalid";
}

function base64url(data: Uint8Array | string): string {
  return Buffer.from(data).toString("base64url");
}

/** A compact JWS (ES256, with kid) of `claims`, signed through the signer. */
export async function signJws(signer: ChronSigner, claims: object): Promise<string> {
  const input = `${base64url(JSON.stringify({ alg: "ES256", typ: "JWT", kid: signer.kid }))}.${base64url(JSON.stringify(claims))}`;
  return `${input}.${base64url(await signer.sign(Buffer.from(input, "ascii")))}`;
}

export function publicJwkOf(key: KeyObject): Record<string, string> {
  const jwk = key.export({ format: "jwk" }) as Record<string, string>;
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
}

/** An EC P-256 private key held in this process (from the key file). */
export class LocalKeySigner implements ChronSigner {
  readonly kid: string;
  private readonly privateKey: KeyObject;
  private readonly own: ChronVerifyingKey;
  private readonly tagKey: Buffer;

  constructor(
    privateKeyPem: string,
    private readonly trusted: ChronVerifyingKey[] = [],
  ) {
    this.privateKey = createPrivateKey(privateKeyPem);
    if (this.privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") throw new Error("the Chron signing key must be an EC P-256 key (ES256)");
    const publicKey = createPublicKey(this.privateKey);
    const publicJwk = publicJwkOf(publicKey);
    this.kid = jwkThumbprint(publicJwk);
    this.own = { kid: this.kid, alg: "ES256", publicKey, publicJwk, maxSeq: null };
    // The tag key is derived from the private scalar, so it is the same however the PEM is written.
    const d = Buffer.from((this.privateKey.export({ format: "jwk" }) as { d: string }).d, "base64url");
    this.tagKey = Buffer.from(hkdfSync("sha256", d, Buffer.alloc(0), "claiim chron record tag v1", 32));
  }

  async sign(data: Uint8Array): Promise<Uint8Array> {
    return ecdsaSign("sha256", data, { key: this.privateKey, dsaEncoding: "ieee-p1363" });
  }

  publicKeys(): ChronVerifyingKey[] {
    return [this.own, ...this.trusted.filter((k) => k.kid !== this.kid)];
  }

  tag(recordHash: string): string {
    return `${this.kid.slice(0, 8)}:${createHmac("sha256", this.tagKey).update(Buffer.from(recordHash, "hex")).digest("hex").slice(0, TAG_HEX)}`;
  }
}

export function lookupIn(keys: ChronVerifyingKey[]): ChronKeyLookup {
  const byKid = new Map(keys.map((k) => [k.kid, k]));
  return (kid) => byKid.get(kid);
}

/** JWK member marking a key as Chron's in a JWKS that holds other keys too. */
export const CHRON_USE = "claiim_use";
/** JWK member holding a key's maxSeq. */
export const MAX_SEQ = "claiim_max_seq";

/** A key as a JWKS publishes it: marked as Chron's, with its limit when it has one. */
export function publishChronKey(k: ChronVerifyingKey): Record<string, string | number> {
  return { ...k.publicJwk, kid: k.kid, alg: k.alg, use: "sig", [CHRON_USE]: "chron", ...(k.maxSeq !== null ? { [MAX_SEQ]: k.maxSeq } : {}) };
}

/**
 * The Chron keys of a JWKS. When some of its keys are marked as Chron's, only those are: the
 * server's JWKS also holds the keys of agent tokens and policy bundles, which sit in the database
 * and must never vouch for a checkpoint. A JWKS without marks (saved before they existed) is
 * taken whole. The kid is the RFC 7638 thumbprint, recomputed, whatever the file says.
 */
export function chronKeysOf(jwks: { keys?: unknown }): ChronVerifyingKey[] {
  if (!jwks || !Array.isArray(jwks.keys)) throw new Error('a JWKS is {"keys": [...]}');
  const all = jwks.keys as Record<string, unknown>[];
  const marked = all.some((k) => k && typeof k === "object" && CHRON_USE in k);
  const out: ChronVerifyingKey[] = [];
  for (const k of all) {
    if (!k || typeof k !== "object" || (marked && k[CHRON_USE] !== "chron")) continue;
    if (k.kty !== "EC" || k.crv !== "P-256" || typeof k.x !== "string" || typeof k.y !== "string") continue;
    if ("d" in k) throw new Error("a JWKS of trusted keys must not hold private keys");
    const maxSeq = k[MAX_SEQ];
    if (maxSeq !== undefined && (typeof maxSeq !== "number" || !Number.isSafeInteger(maxSeq) || maxSeq < 0)) throw new Error(`${MAX_SEQ} must be a record number`);
    const publicJwk = { kty: "EC", crv: "P-256", x: k.x, y: k.y };
    out.push({ kid: jwkThumbprint(publicJwk), alg: "ES256", publicKey: createPublicKey({ key: publicJwk, format: "jwk" }), publicJwk, maxSeq: (maxSeq as number | undefined) ?? null });
  }
  return out;
}

/** Where Chron's key lives: a key file, and a JWKS file of earlier keys that still verify. */
export interface ChronKeyFiles {
  keyFile: string;
  /** False when CLAIIM chose the path (beside the database): then it creates the key if missing. */
  keyFileGiven: boolean;
  trustedKeysFile: string;
}

/** Writes a file whole or not at all, and makes it durable, with the given mode. */
export function writeDurably(file: string, text: string, mode: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}

export function syncDir(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function readTrustedKeys(file: string): ChronVerifyingKey[] {
  if (!fs.existsSync(file)) return [];
  try {
    return chronKeysOf(JSON.parse(fs.readFileSync(file, "utf8")));
  } catch (err) {
    throw new Error(`the trusted Chron keys file ${file} is not a JWKS of EC P-256 public keys: ${(err as Error).message}`);
  }
}

/** Adds keys to the trusted keys file (a JWKS), keeping those it holds. */
export function trustKeys(file: string, keys: ChronVerifyingKey[]): void {
  const held = readTrustedKeys(file);
  const merged = [...held, ...keys.filter((k) => !held.some((h) => h.kid === k.kid))];
  writeDurably(file, `${JSON.stringify({ keys: merged.map(publishChronKey) }, null, 2)}\n`, 0o644);
}

/**
 * The Chron signing key from its file. CLAIIM creates the file (mode 0600, its own file, made
 * durable) where it chose the path and no file is there yet; `created` says so. A file named by
 * CLAIIM_CHRON_SIGNING_KEY_FILE must exist: a mistyped path must not quietly start a new key.
 */
export function openKeyFile(files: ChronKeyFiles, at = files.keyFile): { pem: string; created: boolean } {
  if (fs.existsSync(at)) {
    const pem = fs.readFileSync(at, "utf8");
    return { pem, created: false };
  }
  if (files.keyFileGiven) throw new Error(`CLAIIM_CHRON_SIGNING_KEY_FILE names ${files.keyFile}, which does not exist`);
  const pem = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "pem", type: "pkcs8" }) as string;
  fs.mkdirSync(path.dirname(at), { recursive: true });
  // WARNING: exclusive creation: two processes starting at once must not each make a key.
  const fd = fs.openSync(at, "wx", 0o600);
  try {
    fs.writeSync(fd, pem);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  syncDir(path.dirname(at));
  return { pem, created: true };
}

/**
 * Where the new key waits while it moves Chron's key out of the database: it becomes the key file
 * only once the move is recorded and signed, so that a start interrupted in between moves on with
 * the same key rather than starting the move over with another.
 */
export function movingKeyFile(files: ChronKeyFiles): string {
  return `${files.keyFile}.moving`;
}

/** Makes the key waiting in movingKeyFile() the key file. */
export function settleKeyFile(files: ChronKeyFiles): void {
  fs.renameSync(movingKeyFile(files), files.keyFile);
  syncDir(path.dirname(files.keyFile));
}
