import jwt from "jsonwebtoken";
import type { SigningKeys } from "../keys/signing-keys";

export interface TokenSettings {
  issuer: string;
  audience: string;
  agentTokenTtlSeconds: number;
}

/**
 * The one place CLAIIM's own tokens are signed: long-lived agent credentials and short-lived
 * OAuth access tokens alike carry kid, iss, aud, sub, jti, iat and exp, signed with the current
 * agent-token key (ES256), so the authenticator verifies both one way.
 */
export class TokenMinter {
  constructor(
    private readonly keys: SigningKeys,
    readonly settings: TokenSettings,
  ) {}

  /** The kid of the key that signs now. */
  currentKid(): string {
    return this.keys.current().kid;
  }

  mint(claims: Record<string, unknown>, token: { subject: string; jwtid: string; ttlSeconds: number }): string {
    const key = this.keys.current();
    return jwt.sign(claims, key.privateKey, {
      algorithm: key.alg,
      keyid: key.kid,
      issuer: this.settings.issuer,
      audience: this.settings.audience,
      subject: token.subject,
      jwtid: token.jwtid,
      expiresIn: token.ttlSeconds,
    });
  }

  jwks(): { keys: Record<string, string>[] } {
    return { keys: this.keys.jwks() };
  }
}
