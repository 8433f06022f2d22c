import { recordKeyCreation } from "../chron/key-events";
import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { CompactSign, compactVerify, decodeProtectedHeader } from "jose";
import { isLosslessNumber, parse as parseLossless } from "lossless-json";
import type { Recorder } from "../chron/chron-store";
import { newEvent } from "../chron/record";
import { generate, jwkThumbprint, loadOrCreateKeys, publish, type SigningKeys, type KeyStore } from "../keys/signing-keys";
import { ConflictError } from "../lib/errors";
import type { BundleFiles } from "./bundle";
import type { Actor } from "../shared/principal";

/**
 * CLAIIM_BUNDLE_SIGNING_KEY_FILE (an EC P-256 private key, PEM) signs bundles, and only it and the
 * public keys of CLAIIM_BUNDLE_TRUSTED_KEYS_FILE (a JWKS) verify them: whoever can write the
 * database, and read it, still cannot sign a bundle CLAIIM would load.
 */
export interface ExternalBundleKeys {
  privateKeyPem: string;
  trusted: Record<string, string>[];
}

/** OPA's name for a bundle's signature file. */
export const SIGNATURES_FILE = ".signatures.json";
const HASH_ALGORITHM = "SHA-256";
const ISSUER = "claiim";

export class BundleSignatureError extends Error {}

/** OPA parses these files and hashes their structure, so that formatting does not matter. */
function isStructured(name: string): boolean {
  const base = name.split("/").pop()!;
  return base === "data.json" || base === ".manifest" || base === "data.yaml" || base === "data.yml";
}

/** A string as Go's encoding/json writes it without HTML escaping, which is what OPA's hasher feeds SHA-256. */
function goString(s: string): string {
  return JSON.stringify(s)
    .replace(/\u2028/g, "\\u2028")
    .replace(/\u2029/g, "\\u2029")
    .replace(/\\ud[89a-f][0-9a-f]{2}/g, "\\ufffd");
}

function byUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * OPA's structural hash of a parsed JSON document (bundle/hash.go): objects with keys in byte
 * order, arrays in order, numbers as written in the file, strings as Go encodes them.
 */
function walk(v: unknown, out: string[]): void {
  if (isLosslessNumber(v)) out.push(v.value);
  else if (Array.isArray(v)) {
    out.push("[");
    v.forEach((e, i) => {
      if (i) out.push(",");
      walk(e, out);
    });
    out.push("]");
  } else if (v !== null && typeof v === "object") {
    out.push("{");
    Object.keys(v)
      .sort(byUtf8)
      .forEach((k, i) => {
        if (i) out.push(",");
        out.push(goString(k), ":");
        walk((v as Record<string, unknown>)[k], out);
      });
    out.push("}");
  } else if (typeof v === "string") out.push(goString(v));
  else out.push(JSON.stringify(v));
}

/** The hex SHA-256 that an OPA bundle signature lists for a file, computed as OPA verifies it. */
export function opaFileHash(name: string, bytes: Buffer): string {
  const h = createHash("sha256");
  if (!isStructured(name)) return h.update(bytes).digest("hex");
  if (!name.endsWith(".json") && name.split("/").pop() !== ".manifest") {
    throw new BundleSignatureError(`${name}: CLAIIM signs bundles whose data is JSON; YAML data is compiled into data.json first`);
  }
  const parts: string[] = [];
  walk(parseLossless(bytes.toString("utf8")), parts);
  return h.update(parts.join(""), "utf8").digest("hex");
}

/** A key that verifies bundle signatures. */
interface Verifier {
  kid: string;
  alg: "ES256";
  publicKey: KeyObject;
  publicJwk: Record<string, string>;
  /** When it stopped signing; null while it signs, or when that is not known (an external trusted key). */
  retiredAt: Date | null;
}

interface SignedFile {
  name: string;
  hash: string;
  algorithm: string;
}

/**
 * CLAIIM's bundle-signing keys and OPA bundle signatures: a `.signatures.json` holding one ES256
 * JWS whose payload lists every file of the bundle with its hash, with the key's `kid` in the
 * header. That is the format of `opa build --signing-key` and `opa sign`, so `opa run
 * --verification-key` and OPA's bundle `signing` configuration check CLAIIM's bundles as they are.
 */
export class BundleSigner {
  /** External mode: earlier keys, trusted to verify, that no longer sign. */
  private trusted: Verifier[] = [];

  constructor(
    private readonly keys: SigningKeys,
    private readonly store: KeyStore,
    private readonly record: Recorder,
    private readonly external: ExternalBundleKeys | null = null,
  ) {}

  /**
   * Loads the keys: the external key file and its trusted keys when configured, and then the
   * database's bundle-signing keys are not trusted at all; otherwise the stored keys, creating the
   * first one on a new database.
   */
  async start(): Promise<void> {
    if (!this.external) return loadOrCreateKeys(this.keys, this.store, recordKeyCreation(this.record));
    const jwk = createPublicKey(this.external.privateKeyPem).export({ format: "jwk" }) as Record<string, string>;
    const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
    this.keys.load([{ kid: jwkThumbprint(publicJwk), purpose: this.keys.purpose, alg: "ES256", privateKeyPem: this.external.privateKeyPem, publicJwk, createdAt: new Date(0), retiredAt: null }]);
    // CLAIIM's kids are RFC 7638 thumbprints, so a trusted key is known by its own, whatever kid the file gives it.
    this.trusted = this.external.trusted.map((k) => {
      const publicJwk = { kty: k.kty, crv: k.crv, x: k.x, y: k.y };
      return { kid: jwkThumbprint(publicJwk), alg: "ES256" as const, publicKey: createPublicKey({ key: publicJwk, format: "jwk" }), publicJwk, retiredAt: null };
    });
  }

  /** The purpose its keys are stored under. */
  get purpose(): string {
    return this.keys.purpose;
  }

  /** Another process rotated the stored keys: load them again (an external key file is not the database's). */
  async reload(): Promise<void> {
    if (!this.external) this.keys.load(await this.store.listSigningKeys(this.keys.purpose));
  }

  private verifiers(): Verifier[] {
    return [...this.keys.all(), ...this.trusted];
  }

  /** The bundle with a `.signatures.json` over all of its other files, by the current key. */
  async sign(files: BundleFiles, now = new Date()): Promise<BundleFiles> {
    const key = this.keys.current();
    const signed: SignedFile[] = [...files.keys()]
      .filter((name) => name !== SIGNATURES_FILE)
      .sort()
      .map((name) => ({ name, hash: opaFileHash(name, files.get(name)!), algorithm: HASH_ALGORITHM }));
    const payload = { files: signed, iat: Math.floor(now.getTime() / 1000), iss: ISSUER };
    const jws = await new CompactSign(Buffer.from(JSON.stringify(payload)))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: "JWT" })
      .sign(key.privateKey);
    const out: BundleFiles = new Map(files);
    out.set(SIGNATURES_FILE, Buffer.from(JSON.stringify({ signatures: [jws] })));
    return out;
  }

  /**
   * Checks the bundle as OPA does: exactly one JWS, by a key CLAIIM has held (retired keys
   * included, so old bundles stay verifiable), listing every file with a matching hash and no
   * file that is absent. Returns the signing key's id.
   */
  async verify(files: BundleFiles): Promise<string> {
    const fail = (why: string): never => {
      throw new BundleSignatureError(`bundle signature invalid: ${why}`);
    };
    const raw = files.get(SIGNATURES_FILE) ?? fail(`the bundle has no ${SIGNATURES_FILE}`);
    let signatures: unknown;
    try {
      signatures = (JSON.parse(raw.toString("utf8")) as { signatures?: unknown }).signatures;
    } catch {
      fail(`${SIGNATURES_FILE} is not JSON`);
    }
    if (!Array.isArray(signatures) || signatures.length !== 1 || typeof signatures[0] !== "string") fail(`${SIGNATURES_FILE} must hold exactly one JWS`);
    const jws = (signatures as string[])[0];
    let kid: string | undefined;
    try {
      kid = decodeProtectedHeader(jws).kid;
    } catch {
      fail("the JWS header is malformed");
    }
    const key = this.verifiers().find((k) => k.kid === kid) ?? fail(`signed by unknown key ${JSON.stringify(kid ?? null)}`);
    let payload: { files?: SignedFile[] };
    try {
      payload = JSON.parse(Buffer.from((await compactVerify(jws, key.publicKey, { algorithms: [key.alg] })).payload).toString("utf8"));
    } catch {
      return fail(`the signature does not verify with key ${kid}`);
    }
    const listed = new Map((payload.files ?? []).map((f) => [f.name, f]));
    for (const [name, bytes] of files) {
      if (name === SIGNATURES_FILE) continue;
      const entry = listed.get(name) ?? fail(`${name} is not covered by the signature`);
      if (entry.algorithm !== HASH_ALGORITHM) fail(`${name} is hashed with ${entry.algorithm}, not ${HASH_ALGORITHM}`);
      if (opaFileHash(name, bytes) !== entry.hash) fail(`${name} does not match its signed hash`);
      listed.delete(name);
    }
    if (listed.size) fail(`signed file(s) missing from the bundle: ${[...listed.keys()].join(", ")}`);
    return key.kid;
  }

  /** A new key signs from now on; every earlier key keeps verifying the bundles it signed. */
  async rotate(actor: Actor, reason: string | null): Promise<{ kid: string; previous: string | null }> {
    if (this.external) {
      throw new ConflictError(
        "bundle_signing_key_external",
        "the bundle-signing key is the file CLAIIM_BUNDLE_SIGNING_KEY_FILE names: replace that file, add the old public key to CLAIIM_BUNDLE_TRUSTED_KEYS_FILE, and restart",
      );
    }
    const stored = await this.store.listSigningKeys(this.keys.purpose);
    const now = new Date();
    const retiring = stored.filter((k) => k.retiredAt === null).map((k) => ({ ...k, retiredAt: now }));
    const fresh = generate(this.keys.purpose, now);
    const previous = retiring.map((k) => k.kid).pop() ?? null;
    await this.record(
      [
        newEvent({
          type: "signing_key.rotated",
          actor,
          subject: { type: "signing_key", id: fresh.kid, name: fresh.purpose },
          reason,
          before: { signing_kid: previous },
          after: { signing_kid: fresh.kid, verifying_kids: [...stored.map((k) => k.kid), fresh.kid] },
        }),
      ],
      async (tx) => {
        for (const k of retiring) await this.store.saveSigningKey(k, tx);
        await this.store.saveSigningKey(fresh, tx);
      },
    );
    this.keys.load([...stored.filter((k) => k.retiredAt !== null), ...retiring, fresh]);
    return { kid: fresh.kid, previous };
  }

  /** Every key that verifies bundles, with the one that signs now marked. */
  list(): { kid: string; alg: string; current: boolean; signs_until: string | null; jwk: Record<string, string>; public_key_pem: string }[] {
    const current = this.keys.current().kid;
    return this.verifiers().map((k) => ({
      kid: k.kid,
      alg: k.alg,
      current: k.kid === current,
      signs_until: k.retiredAt?.toISOString() ?? null,
      jwk: publish(k),
      public_key_pem: k.publicKey.export({ format: "pem", type: "spki" }) as string,
    }));
  }

  jwks(): Record<string, string>[] {
    return this.verifiers().map(publish);
  }
}
