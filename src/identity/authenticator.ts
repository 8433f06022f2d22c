import jwt from "jsonwebtoken";
import { AuthenticationError } from "../lib/errors";
import type { IdentityDirectory } from "./directory";
import { API_KEY_PREFIX } from "./secrets";
import type { TokenSettings } from "./tokens";
import type { OAuthService } from "./oauth-service";
import type { OidcVerifier } from "./oidc";
import type { SigningKeys } from "../keys/signing-keys";
import type { OnBehalfOf, Principal } from "../shared/principal";

/**
 * A verified CLAIIM token: an agent credential (its jti names the credential) or an access token
 * from the token endpoint (its cid names the OAuth client; with RFC 8693 `act`, the subject is
 * the user the agent acts for and act.sub the agent).
 */
interface VerifiedToken {
  /** The signing key that verified it: the token stops working when the key stops verifying. */
  kid: string;
  agentId: string;
  credentialId: string;
  via: "credential" | "client";
  onBehalfOf: OnBehalfOf | null;
  expMs: number;
}

const CACHE_SIZE = 10_000;

/**
 * Turns a bearer credential into a principal: an API key (opaque, `claiim_` prefix, looked up by
 * hash) or an agent token (an ES256 JWT signed by CLAIIM). Anything else, or anything that does not
 * check out, is a 401.
 *
 * A token's signature is checked once; the verified claims are then kept, keyed by the exact token
 * text, so a forged token can never hit the cache. Expiry, the signing key's validity, revocation and
 * the agent's existence are checked on every call, from memory: WARNING: a cached token must never
 * outlive its key, its credential or its agent.
 */
export class Authenticator {
  private readonly verified = new Map<string, VerifiedToken>();

  constructor(
    private readonly identity: IdentityDirectory,
    private readonly oauth: OAuthService,
    private readonly keys: SigningKeys,
    private readonly tokens: TokenSettings,
    private readonly oidc: OidcVerifier | null = null,
    /** Throws (503), or rejects once it has tried to catch up, when what this process holds may be older than the bound: nothing is answered from it then. */
    private readonly fresh: () => void | Promise<void> = () => undefined,
  ) {}

  /** Synchronous for API keys and CLAIIM's own tokens while this process is up to date; a human's token may need the provider's keys fetched. */
  authenticate(authorization: string | undefined): Principal | Promise<Principal> {
    const catchingUp = this.fresh();
    return catchingUp ? catchingUp.then(() => this.principal(authorization)) : this.principal(authorization);
  }

  private principal(authorization: string | undefined): Principal | Promise<Principal> {
    const match = authorization ? /^Bearer ([^\s]+)$/i.exec(authorization.trim()) : null;
    if (!match) throw new AuthenticationError("credential_missing", "send a credential as Authorization: Bearer <token>");
    const secret = match[1];
    if (secret.startsWith(API_KEY_PREFIX)) return this.apiKey(secret);
    if (this.oidc && !this.verified.has(secret) && this.oidc.issues((jwt.decode(secret) as jwt.JwtPayload | null)?.iss)) return this.oidc.verify(secret);
    return this.agentToken(secret);
  }

  private apiKey(secret: string): Principal {
    const key = this.identity.apiKeyBySecret(secret);
    if (!key) throw new AuthenticationError("api_key_invalid", "the API key is not valid");
    if (key.revokedAt) throw new AuthenticationError("api_key_revoked", "the API key has been revoked");
    if (key.expiresAt && key.expiresAt.getTime() <= Date.now()) throw new AuthenticationError("api_key_expired", "the API key has expired");
    return { kind: "api_key", id: key.id, name: key.name, role: key.role, orgId: key.orgId };
  }

  private agentToken(token: string): Principal {
    const claims = this.verified.get(token) ?? this.verify(token);
    if (claims.expMs <= Date.now()) {
      this.verified.delete(token);
      throw new AuthenticationError("token_expired", "the agent token has expired");
    }
    if (!this.keys.byKid(claims.kid)) {
      this.verified.delete(token);
      throw new AuthenticationError("token_invalid", "the token's signing key has been retired");
    }
    if (claims.via === "client") {
      const client = this.oauth.client(claims.credentialId);
      if (!client || client.agentId !== claims.agentId) throw new AuthenticationError("token_invalid", "the access token names no known client");
      if (client.revokedAt) throw new AuthenticationError("credential_revoked", "the client that obtained this access token has been revoked");
    } else {
      const credential = this.identity.credential(claims.credentialId);
      if (!credential || credential.agentId !== claims.agentId) throw new AuthenticationError("token_invalid", "the agent token names no known credential");
      if (credential.revokedAt) throw new AuthenticationError("credential_revoked", "the agent credential has been revoked");
    }
    const context = this.identity.agentContext(claims.agentId);
    if (!context) throw new AuthenticationError("token_invalid", "the agent token names no known agent");
    return { kind: "agent", agentId: claims.agentId, credentialId: claims.credentialId, orgId: context.organization.id, onBehalfOf: claims.onBehalfOf };
  }

  private verify(token: string): VerifiedToken {
    const decoded = jwt.decode(token, { complete: true });
    if (!decoded || typeof decoded.payload === "string") throw new AuthenticationError("token_invalid", "the credential is neither an API key nor a JWT");
    if (decoded.header.alg !== "ES256") throw new AuthenticationError("token_invalid", `token algorithm ${decoded.header.alg} is not accepted; CLAIIM tokens are ES256`);
    const key = decoded.header.kid ? this.keys.byKid(decoded.header.kid) : undefined;
    if (!key) throw new AuthenticationError("token_invalid", "the token is not signed by a key of this CLAIIM");
    let payload: jwt.JwtPayload;
    try {
      payload = jwt.verify(token, key.publicKey, {
        algorithms: ["ES256"],
        issuer: this.tokens.issuer,
        audience: this.tokens.audience,
        clockTolerance: 5,
      }) as jwt.JwtPayload;
    } catch (err) {
      if (err instanceof jwt.TokenExpiredError) throw new AuthenticationError("token_expired", "the agent token has expired");
      throw new AuthenticationError("token_invalid", `the agent token is not valid: ${(err as Error).message}`);
    }
    if (typeof payload.sub !== "string" || typeof payload.jti !== "string" || typeof payload.exp !== "number") {
      throw new AuthenticationError("token_invalid", "the agent token lacks sub, jti or exp");
    }
    let verified: VerifiedToken;
    if (typeof payload.cid === "string") {
      const act = payload.act as { sub?: unknown } | undefined;
      if (act !== undefined && typeof act?.sub !== "string") throw new AuthenticationError("token_invalid", "the access token's act claim has no sub");
      verified = act
        ? { kid: key.kid, agentId: act.sub as string, credentialId: payload.cid, via: "client", onBehalfOf: { subject: payload.sub }, expMs: payload.exp * 1000 }
        : { kid: key.kid, agentId: payload.sub, credentialId: payload.cid, via: "client", onBehalfOf: null, expMs: payload.exp * 1000 };
    } else {
      verified = { kid: key.kid, agentId: payload.sub, credentialId: payload.jti, via: "credential", onBehalfOf: null, expMs: payload.exp * 1000 };
    }
    if (this.verified.size >= CACHE_SIZE) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, verified);
    return verified;
  }
}
