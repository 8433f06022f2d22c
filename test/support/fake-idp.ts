import http from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type KeyLike } from "jose";

export const IDP_ISSUER = "https://idp.acme.example";
export const IDP_AUDIENCE = "claiim-api";

/** A stand-in identity provider on loopback: it serves a JWKS and signs tokens, and can rotate. */
export class FakeIdp {
  keys: { kid: string; privateKey: KeyLike; jwk: JWK }[] = [];
  fetches = 0;
  rotations = 0;
  up = true;
  private server = http.createServer((_req, res) => {
    this.fetches += 1;
    if (!this.up) return void res.writeHead(503).end();
    res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ keys: this.keys.map((k) => k.jwk) }));
  });
  url = "";

  async start(): Promise<void> {
    await this.rotate();
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", () => r()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/jwks`;
  }
  async rotate(): Promise<void> {
    const { privateKey, publicKey } = await generateKeyPair("RS256");
    this.rotations += 1;
    const kid = `k${this.rotations}`;
    this.keys = [{ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: "RS256", use: "sig" } }];
  }
  sign(claims: Record<string, unknown>, over: { iss?: string; aud?: string; exp?: number; sub?: string } = {}): Promise<string> {
    const k = this.keys[0];
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT(claims)
      .setProtectedHeader({ alg: "RS256", kid: k.kid })
      .setIssuer(over.iss ?? IDP_ISSUER)
      .setAudience(over.aud ?? IDP_AUDIENCE)
      .setSubject(over.sub ?? "00u-alice")
      .setIssuedAt(now)
      .setExpirationTime(over.exp ?? now + 300)
      .sign(k.privateKey);
  }
  /** What CLAIIM needs to trust this provider. */
  env(): Record<string, string> {
    return { CLAIIM_OIDC_ISSUER: IDP_ISSUER, CLAIIM_OIDC_AUDIENCE: IDP_AUDIENCE, CLAIIM_OIDC_JWKS_URL: this.url, CLAIIM_OIDC_JWKS_COOLDOWN_SECONDS: "0" };
  }
  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}
