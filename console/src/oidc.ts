// Sign-in with the organisation's identity provider: OAuth 2.0 authorization code with PKCE
// (RFC 7636), as a public client, through oauth4webapi. CLAIIM tells the console the provider's
// endpoints and the client id (/console/config.json, from its discovery document).
import * as oauth from "oauth4webapi";

export interface OidcConfig {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  end_session_endpoint: string | null;
  client_id: string;
  scope: string;
  resource: string | null;
  token: "access_token" | "id_token";
}

export interface ConsoleConfig {
  oidc: OidcConfig | null;
  oidc_error?: string;
}

export async function loadConsoleConfig(): Promise<ConsoleConfig> {
  const res = await fetch("/console/config.json", { cache: "no-store", credentials: "omit" });
  if (!res.ok) throw new Error(`the console's configuration could not be read (${res.status})`);
  return res.json() as Promise<ConsoleConfig>;
}

/**
 * WARNING: the one thing the console keeps in sessionStorage, and only between leaving for the
 * provider and coming back: the PKCE verifier, state and nonce of that one request (useless
 * without the provider's code, and deleted as the callback reads them). Never a token.
 */
const PENDING = "claiim.console.oidc-pending";
const PENDING_MAX_AGE_MS = 10 * 60 * 1000;

interface Pending {
  verifier: string;
  state: string;
  nonce: string;
  returnTo: string;
  at: number;
}

export const callbackUrl = () => `${location.origin}/console/callback`;

function server(cfg: OidcConfig): oauth.AuthorizationServer {
  return { issuer: cfg.issuer, authorization_endpoint: cfg.authorization_endpoint, token_endpoint: cfg.token_endpoint };
}

/** Plain HTTP only where CLAIIM was configured with an http:// issuer (a provider on loopback). */
function requestOptions(cfg: OidcConfig): { [oauth.allowInsecureRequests]?: boolean } {
  return cfg.issuer.startsWith("http://") ? { [oauth.allowInsecureRequests]: true } : {};
}

export async function startSignIn(cfg: OidcConfig, returnTo: string): Promise<void> {
  const pending: Pending = { verifier: oauth.generateRandomCodeVerifier(), state: oauth.generateRandomState(), nonce: oauth.generateRandomNonce(), returnTo, at: Date.now() };
  const url = new URL(cfg.authorization_endpoint);
  url.searchParams.set("client_id", cfg.client_id);
  url.searchParams.set("redirect_uri", callbackUrl());
  url.searchParams.set("response_type", "code");
  url.searchParams.set("scope", cfg.scope);
  url.searchParams.set("code_challenge", await oauth.calculatePKCECodeChallenge(pending.verifier));
  url.searchParams.set("code_challenge_method", "S256");
  url.searchParams.set("state", pending.state);
  url.searchParams.set("nonce", pending.nonce);
  if (cfg.resource) url.searchParams.set("resource", cfg.resource);
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  location.assign(url.toString());
}

/** On /console/callback: checks the provider's answer and exchanges its code for a token. */
export async function finishSignIn(cfg: OidcConfig): Promise<{ token: string; returnTo: string }> {
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  if (!raw) throw new Error("no sign-in was started in this tab; start again");
  const pending = JSON.parse(raw) as Pending;
  if (Date.now() - pending.at > PENDING_MAX_AGE_MS) throw new Error("the sign-in took too long; start again");
  const as = server(cfg);
  const client: oauth.Client = { client_id: cfg.client_id };
  const params = oauth.validateAuthResponse(as, client, new URL(location.href), pending.state);
  const response = await oauth.authorizationCodeGrantRequest(as, client, oauth.None(), params, callbackUrl(), pending.verifier, {
    ...requestOptions(cfg),
    additionalParameters: cfg.resource ? { resource: cfg.resource } : undefined,
  });
  const result = await oauth.processAuthorizationCodeResponse(as, client, response, { expectedNonce: pending.nonce, requireIdToken: true });
  const token = cfg.token === "id_token" ? result.id_token : result.access_token;
  if (!token) throw new Error(`the identity provider gave no ${cfg.token}`);
  return { token, returnTo: pending.returnTo };
}

export function describeOidcError(err: unknown): string {
  if (err instanceof oauth.AuthorizationResponseError) return `the identity provider refused: ${err.error}${err.error_description ? ` (${err.error_description})` : ""}`;
  if (err instanceof oauth.ResponseBodyError) return `the identity provider's token endpoint refused: ${err.error}${err.error_description ? ` (${err.error_description})` : ""}`;
  return (err as Error).message;
}
