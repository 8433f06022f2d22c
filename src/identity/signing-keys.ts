import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { SigningKey } from "./model";

export interface LoadedKey {
  kid: string;
  alg: "ES256";
  privateKey: KeyObject;
  publicKey: KeyObject;
  publicJwk: Record<string, string>;
}

/** RFC 7638 JWK thumbprint, base64url: a kid that anyone can recompute from the public key. */
export function jwkThumbprint(jwk: Record<string, string>): string {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash("sha256").update(canonical).digest("base64url");
}

function load(k: SigningKey): LoadedKey {
  const privateKey = createPrivateKey(k.privateKeyPem);
  return { kid: k.kid, alg: k.alg, privateKey, publicKey: createPublicKey(privateKey), publicJwk: k.publicJwk };
}

/**
 * CLAIIM's ES256 signing keys for one purpose. The newest unretired key signs; every unretired
 * key verifies and is published in the JWKS. Keys are stored, so tokens survive restarts.
 */
export class SigningKeys {
  private keys: LoadedKey[] = [];

  constructor(readonly purpose: string) {}

  /** Replaces the loaded keys with the stored ones of this purpose that are not retired. */
  load(stored: SigningKey[]): void {
    this.keys = stored.filter((k) => k.purpose === this.purpose && !k.retiredAt).map(load);
  }

  current(): LoadedKey {
    const key = this.keys[this.keys.length - 1];
    if (!key) throw new Error(`no ${this.purpose} signing key loaded`);
    return key;
  }

  byKid(kid: string): LoadedKey | undefined {
    return this.keys.find((k) => k.kid === kid);
  }

  jwks(): Record<string, string>[] {
    return this.keys.map((k) => ({ ...k.publicJwk, kid: k.kid, alg: k.alg, use: "sig" }));
  }
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
