import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { Tx } from "../db/database";

/** An ES256 key pair of CLAIIM's, for one purpose (agent tokens, Chron checkpoints, bundles). */
export interface SigningKey {
  kid: string;
  purpose: string;
  alg: "ES256";
  privateKeyPem: string;
  publicJwk: Record<string, string>;
  createdAt: Date;
  /** From then on the key neither signs nor verifies; null while it is the signing key. May lie in the future (rotation overlap). */
  retiredAt: Date | null;
}

export interface LoadedKey {
  kid: string;
  alg: "ES256";
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: Record<string, string>;
  /** From then on the key neither signs nor verifies; null while it is the signing key. */
  retiredAt: Date | null;
}

/** RFC 7638 JWK thumbprint, base64url: a kid that anyone can recompute from the public key. */
export function jwkThumbprint(jwk: Record<string, string>): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash("sha256").update(canonical).digest("base64url");
}

function load(k: SigningKey): LoadedKey {
  const privateKey = createPrivateKey(k.privateKeyPem);
  return { kid: k.kid, alg: k.alg, privateKey, publicKey: createPublicKey(privateKey), publicJwk: k.publicJwk, retiredAt: k.retiredAt };
}

/**
 * CLAIIM's ES256 signing keys for one purpose. The newest key that is not being retired signs.
 * After a rotation the previous key keeps verifying, and stays in the JWKS, until its retirement
 * time: tokens it signed keep working for the overlap. Keys are stored, so they survive restarts.
 */
export class SigningKeys {
  private keys: LoadedKey[] = [];

  constructor(readonly purpose: string) {}

  /** Replaces the loaded keys with the stored ones of this purpose, oldest first. */
  load(stored: SigningKey[]): void {
    this.keys = stored
      .filter((k) => k.purpose === this.purpose)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
      .map(load);
  }

  current(): LoadedKey {
    const key = this.keys.filter((k) => k.retiredAt === null).pop();
    if (!key) throw new Error(`no ${this.purpose} signing key loaded`);
    return key;
  }

  /** A key that may verify now. */
  byKid(kid: string, now = Date.now()): LoadedKey | undefined {
    return this.valid(now).find((k) => k.kid === kid);
  }

  jwks(now = Date.now()): Record<string, string>[] {
    return this.valid(now).map(publish);
  }

  /** Every key ever loaded, retired or not: old signatures (such as Chron checkpoints) stay checkable. */
  all(): LoadedKey[] {
    return [...this.keys];
  }

  private valid(now: number): LoadedKey[] {
    return this.keys.filter((k) => k.retiredAt === null || k.retiredAt.getTime() > now);
  }
}

export function publish(k: Pick<LoadedKey, "kid" | "alg" | "publicJwk">): Record<string, string> {
  return { ...k.publicJwk, kid: k.kid, alg: k.alg, use: "sig" };
}

/** Where signing keys are kept (the database, today): every key ever made, by purpose. */
export interface KeyStore {
  listSigningKeys(purpose: string): Promise<SigningKey[]>;
  saveSigningKey(key: SigningKey, tx: Tx): Promise<void>;
}

/**
 * How a new key is committed: `save` within the transaction that also records its creation (the
 * caller records it in Chron, which this module, below Chron, does not know).
 */
export type OnKeyCreated = (key: SigningKey, save: (tx: Tx) => Promise<void>) => Promise<unknown>;

/** Loads the stored keys of this purpose, first creating one (recorded by `onCreated`) when none signs. */
export async function loadOrCreateKeys(keys: SigningKeys, store: KeyStore, onCreated: OnKeyCreated): Promise<void> {
  let stored = await store.listSigningKeys(keys.purpose);
  if (!stored.some((k) => k.retiredAt === null)) {
    const key = generate(keys.purpose);
    await onCreated(key, (tx) => store.saveSigningKey(key, tx));
    stored = [...stored, key];
  }
  keys.load(stored);
}

export function generate(purpose: string, now = new Date()): SigningKey {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = publicKey.export({ format: "jwk" }) as Record<string, string>;
  const publicJwk = { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  return {
    kid: jwkThumbprint(publicJwk),
    purpose,
    alg: "ES256",
    privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }) as string,
    publicJwk,
    createdAt: now,
    retiredAt: null,
  };
}
