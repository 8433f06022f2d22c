import type { Logger } from "../lib/logger";

/** What the console needs to run the authorization code flow with PKCE against the provider. */
export interface ProviderMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  end_session_endpoint: string | null;
}

export interface ConsoleOidcConfig extends ProviderMetadata {
  client_id: string;
  scope: string;
  resource: string | null;
  token: "access_token" | "id_token";
}

const TIMEOUT_MS = 5000;

/**
 * The identity provider's OpenID Connect discovery document (RFC 8414 / OpenID Connect Discovery
 * 1.0), fetched by CLAIIM, which reaches the provider already for its keys, and checked before
 * the console is told to send anyone there. Kept for `cacheSeconds`; a failure is retried at most
 * once per `cooldownSeconds`.
 */
export class OidcDiscovery {
  private cached: { at: number; value: { metadata: ProviderMetadata } | { error: string } } | null = null;
  private pending: Promise<{ metadata: ProviderMetadata } | { error: string }> | null = null;

  constructor(
    private readonly issuer: string,
    private readonly cooldownSeconds: number,
    private readonly cacheSeconds: number,
    private readonly logger: Logger,
  ) {}

  async get(): Promise<{ metadata: ProviderMetadata } | { error: string }> {
    if (this.cached) {
      const age = (Date.now() - this.cached.at) / 1000;
      if (age < ("error" in this.cached.value ? this.cooldownSeconds : this.cacheSeconds)) return this.cached.value;
    }
    this.pending ??= this.fetch().then((value) => {
      this.cached = { at: Date.now(), value };
      this.pending = null;
      return value;
    });
    return this.pending;
  }

  private async fetch(): Promise<{ metadata: ProviderMetadata } | { error: string }> {
    const url = `${this.issuer.replace(/\/+$/, "")}/.well-known/openid-configuration`;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), redirect: "error", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`${url} answered ${res.status}`);
      return { metadata: checkMetadata(await res.json(), this.issuer) };
    } catch (err) {
      const error = `the identity provider's discovery document could not be used: ${(err as Error).message}`;
      this.logger.warn("console OIDC discovery failed", { error });
      return { error };
    }
  }
}

function endpoint(doc: Record<string, unknown>, name: string, issuer: URL, required: boolean): string | null {
  const value = doc[name];
  if (value === undefined && !required) return null;
  if (typeof value !== "string") throw new Error(`${name} is missing`);
  const url = new URL(value);
  // An issuer on plain HTTP (a provider on loopback, in tests) may have plain HTTP endpoints; an HTTPS one may not.
  if (url.protocol !== "https:" && !(url.protocol === "http:" && issuer.protocol === "http:")) throw new Error(`${name} is not an https URL`);
  return url.toString();
}

/** The checks RFC 8414 §3.3 asks of a client, and those the console relies on. */
export function checkMetadata(doc: unknown, issuer: string): ProviderMetadata {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new Error("the document is not a JSON object");
  const d = doc as Record<string, unknown>;
  if (d.issuer !== issuer) throw new Error(`its issuer ${JSON.stringify(d.issuer)} is not CLAIIM_OIDC_ISSUER ${JSON.stringify(issuer)}`);
  const methods = d.code_challenge_methods_supported;
  if (methods !== undefined && !(Array.isArray(methods) && methods.includes("S256"))) throw new Error("the provider does not support PKCE with S256");
  const types = d.response_types_supported;
  if (types !== undefined && !(Array.isArray(types) && types.includes("code"))) throw new Error("the provider does not support the authorization code flow");
  const base = new URL(issuer);
  return {
    issuer,
    authorization_endpoint: endpoint(d, "authorization_endpoint", base, true)!,
    token_endpoint: endpoint(d, "token_endpoint", base, true)!,
    end_session_endpoint: endpoint(d, "end_session_endpoint", base, false),
  };
}
