import path from "node:path";
import { oneOf, parseEnv } from "../lib/env";

/** The web console: where its built files are, and how it signs humans in with OIDC. */
export interface ConsoleSettings {
  /** The console's built files (`make setup` builds them into dist/console). */
  dir: string;
  /**
   * The console as an OAuth public client of the organisation's identity provider (authorization
   * code with PKCE); null when CLAIIM_CONSOLE_OIDC_CLIENT_ID is unset (sign-in by API key only).
   */
  oidc: ConsoleOidc | null;
}

export interface ConsoleOidc {
  clientId: string;
  scope: string;
  /** RFC 8707 resource indicator sent with the request, so the provider issues a token for CLAIIM; null: none. */
  resource: string | null;
  /** Which token the console sends to CLAIIM: the access token (default) or the ID token. */
  token: "access_token" | "id_token";
}

export function consoleSettings(env: NodeJS.ProcessEnv, cwd: string): ConsoleSettings {
  const clientId = env.CLAIIM_CONSOLE_OIDC_CLIENT_ID;
  if (clientId && !env.CLAIIM_OIDC_ISSUER) throw new Error("CLAIIM_CONSOLE_OIDC_CLIENT_ID needs CLAIIM_OIDC_ISSUER (and its audience and JWKS)");
  const { CLAIIM_CONSOLE_OIDC_TOKEN: token } = parseEnv({ CLAIIM_CONSOLE_OIDC_TOKEN: oneOf(["access_token", "id_token"] as const, "access_token") }, env);
  return {
    dir: path.resolve(cwd, env.CLAIIM_CONSOLE_DIR ?? "dist/console"),
    oidc: clientId
      ? { clientId, scope: env.CLAIIM_CONSOLE_OIDC_SCOPE ?? "openid profile email", resource: env.CLAIIM_CONSOLE_OIDC_RESOURCE || null, token }
      : null,
  };
}
