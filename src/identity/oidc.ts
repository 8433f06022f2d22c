import { createRemoteJWKSet, errors as joseErrors, jwtVerify } from "jose";
import { AuthenticationError, InputError, ServiceUnavailableError } from "../lib/errors";
import { isCleanText } from "../lib/text";
import type { IdentityDirectory } from "./directory";
import { type Principal, type Role, ROLES } from "../shared/principal";

/** The organisation's identity provider, for humans (CLAIIM_OIDC_*). */
export interface OidcSettings {
  issuer: string;
  audience: string;
  jwksUrl: string;
  /** Claim holding the human's roles: an array, or a space-separated string. */
  rolesClaim: string;
  /** Claim holding the slug of the human's organisation, or "*" for all of them. */
  orgClaim: string;
  clockSkewSeconds: number;
  /** Least time between two JWKS fetches (a token with an unknown kid triggers one). */
  jwksCooldownSeconds: number;
  jwksCacheSeconds: number;
}

const ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"];

/**
 * Humans signed in with the organisation's own identity provider. Tokens are verified against
 * the configured issuer, audience and JWKS; the JWKS is cached, and fetched again (at most once per
 * cooldown) when a token names a key it does not hold, which is how the provider's key rotation
 * reaches CLAIIM. Roles and organisation come from claims; a token without an organisation claim
 * is refused rather than given every organisation.
 */
export class OidcVerifier {
  private readonly jwks: ReturnType<typeof createRemoteJWKSet>;

  constructor(
    private readonly settings: OidcSettings,
    private readonly identity: IdentityDirectory,
  ) {
    this.jwks = createRemoteJWKSet(new URL(settings.jwksUrl), {
      cooldownDuration: settings.jwksCooldownSeconds * 1000,
      cacheMaxAge: settings.jwksCacheSeconds * 1000,
      timeoutDuration: 5000,
    });
  }

  issues(iss: unknown): boolean {
    return iss === this.settings.issuer;
  }

  async verify(token: string): Promise<Principal> {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.jwks, {
        issuer: this.settings.issuer,
        audience: this.settings.audience,
        clockTolerance: this.settings.clockSkewSeconds,
        algorithms: ALGORITHMS,
        requiredClaims: ["sub", "exp"],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new AuthenticationError("oidc_token_expired", "the identity provider's token has expired");
      if (err instanceof joseErrors.JWTClaimValidationFailed) {
        const code = err.claim === "aud" ? "oidc_audience_invalid" : err.claim === "iss" ? "oidc_issuer_invalid" : "oidc_token_invalid";
        throw new AuthenticationError(code, `the identity provider's token is not acceptable: ${err.message}`);
      }
      if (err instanceof joseErrors.JWKSNoMatchingKey) throw new AuthenticationError("oidc_key_unknown", "the token is signed by a key the identity provider does not publish");
      // The provider's keys could not be had (network, timeout, bad response): nobody is let in, and the caller may retry.
      const fetchFailed =
        !(err instanceof joseErrors.JOSEError) || err instanceof joseErrors.JWKSTimeout || err instanceof joseErrors.JWKSInvalid || /JSON Web Key Set HTTP response/.test(err.message);
      if (fetchFailed) throw new ServiceUnavailableError("oidc_unavailable", `the identity provider's keys could not be fetched: ${(err as Error).message}`);
      throw new AuthenticationError("oidc_token_invalid", `the identity provider's token does not verify: ${(err as Error).message}`);
    }
    // What Chron will name this human by comes from the provider: the text rule holds for it too.
    const textProblems = (["sub", "name", "email", this.settings.orgClaim] as const).filter((c) => typeof payload[c] === "string" && !isCleanText(payload[c] as string));
    if (textProblems.length) {
      throw new InputError(
        "invalid_text",
        `the identity provider's token has claims that are not well-formed text without NUL: ${textProblems.join(", ")}`,
        textProblems.map((c) => ({ path: `token.${c}`, message: "not well-formed text" })),
      );
    }
    const rawRoles = payload[this.settings.rolesClaim];
    const listed = Array.isArray(rawRoles) ? rawRoles : typeof rawRoles === "string" ? rawRoles.split(/\s+/) : [];
    const roles = listed.filter((r): r is Role => (ROLES as readonly unknown[]).includes(r));
    const org = payload[this.settings.orgClaim];
    if (typeof org !== "string" || org === "") {
      throw new AuthenticationError("oidc_org_missing", `the token has no ${this.settings.orgClaim} claim naming the human's organisation ("*" for all)`);
    }
    let orgId: string | null = null;
    if (org !== "*") {
      try {
        orgId = this.identity.organizationBySlug(org, { orgId: null }).id;
      } catch {
        throw new AuthenticationError("oidc_org_unknown", `the token's organisation ${org} does not exist here`);
      }
    }
    const name = typeof payload.name === "string" ? payload.name : typeof payload.email === "string" ? payload.email : payload.sub!;
    // The email is how a signed-in human is recognised as a registered one (an accountable human, a listed approver).
    const email = typeof payload.email === "string" && payload.email_verified !== false ? payload.email.toLowerCase() : null;
    return { kind: "human", issuer: this.settings.issuer, subject: payload.sub!, name, email, roles, orgId };
  }
}
