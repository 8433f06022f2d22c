import { decodeJwt } from "jose";
import { z } from "../http/openapi";
import { route, type RouteSpec } from "../http/route";
import { AuthenticationError } from "../lib/errors";
import { isCleanText } from "../lib/text";
import type { CredentialService } from "./credential-service";
import { type AgentClient } from "./model";
import type { OAuthService } from "./oauth-service";
import { actorOf, scopeOf } from "../shared/principal";

const ClientView = z
  .object({
    client_id: z.string(),
    agent_id: z.string(),
    method: z.enum(["client_secret", "private_key_jwt"]),
    public_jwk: z.record(z.string(), z.unknown()).nullable(),
    created_at: z.string(),
    revoked_at: z.string().nullable(),
  })
  .openapi("AgentClient");

/**
 * A public JWK as RFC 7517 writes one: members that are strings (kty, crv, x, y, n, e, alg, kid,
 * use), booleans (ext) or lists of strings (key_ops, x5c); nothing nested deeper.
 */
const PublicJwk = z
  .record(z.string().min(1).max(64), z.union([z.string().max(16384), z.boolean(), z.number(), z.array(z.string().max(16384)).max(32)]))
  .refine((jwk) => Object.keys(jwk).length <= 32, { message: "a JWK has at most 32 members" })
  .openapi({ description: "The agent's public key (RFC 7517)", maxProperties: 32, propertyNames: { type: "string", minLength: 1, maxLength: 64 } } as object);

const TokenResponse = z.object({ access_token: z.string(), token_type: z.literal("Bearer"), expires_in: z.number().int() }).openapi("TokenResponse");

function basicCredentials(header: string | undefined): { id: string; secret: string } | null {
  const m = header ? /^Basic ([A-Za-z0-9+/=]+)$/i.exec(header.trim()) : null;
  if (!m) return null;
  const decoded = Buffer.from(m[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return null;
  // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
  let id: string;
  let secret: string;
  try {
    id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, " "));
    secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, " "));
  } catch {
    throw new AuthenticationError("client_authentication_invalid", "the Basic credentials are not form-urlencoded as RFC 6749 §2.3.1 requires", {
      error: "invalid_client",
      error_description: "the Basic credentials are not form-urlencoded",
    });
  }
  if (!isCleanText(id) || !isCleanText(secret)) {
    throw new AuthenticationError("client_authentication_invalid", "the Basic credentials are not well-formed text", { error: "invalid_client", error_description: "the Basic credentials are not well-formed text" });
  }
  return { id, secret };
}

/** The client a token request names (HTTP Basic, client_id, or the assertion's issuer), unverified: only for rate limits. */
function claimedClient(basic: { id: string } | null, body: { client_id?: string; client_assertion?: string }): string | null {
  if (basic) return basic.id;
  if (body.client_id) return body.client_id;
  try {
    const iss = body.client_assertion ? decodeJwt(body.client_assertion).iss : undefined;
    return typeof iss === "string" && isCleanText(iss) && iss.length <= 200 ? iss : null;
  } catch {
    return null;
  }
}

/** Rate limits of the token endpoint: throws a 429 when the address or the client asked too often. */
export type TokenAdmission = (address: string, clientId: string | null) => Promise<void>;

export function oauthRoutes(oauth: OAuthService, credentials: CredentialService, keyOverlapSeconds: number, admit: TokenAdmission = async () => undefined): RouteSpec[] {
  const view = (c: AgentClient) => ({
    client_id: c.id,
    agent_id: c.agentId,
    method: c.method,
    public_jwk: c.publicJwk,
    created_at: c.createdAt.toISOString(),
    revoked_at: c.revokedAt?.toISOString() ?? null,
  });
  return [
    route({
      method: "post",
      path: "/oauth/token",
      summary: "OAuth 2.0 token endpoint (client_credentials, with client_secret or private_key_jwt per RFC 7523)",
      tags: ["identity"],
      access: { public: true },
      bodyType: "form",
      body: z
        .object({
          grant_type: z.string(),
          client_id: z.string().max(200).optional(),
          client_secret: z.string().max(500).optional(),
          client_assertion_type: z.string().max(200).optional(),
          client_assertion: z.string().max(16384).optional(),
          scope: z.string().max(1000).optional(),
          on_behalf_of: z.string().min(1).max(320).optional().openapi({ description: "The user the agent acts for (RFC 8693 act): the token's subject" }),
        })
        .strict(),
      responses: {
        200: { description: "A short-lived access token", schema: TokenResponse },
        400: { description: "OAuth invalid_request, invalid_grant or unsupported_grant_type (the problem carries `error` and `error_description`)" },
        401: { description: "OAuth invalid_client: unknown, revoked or badly authenticated client, or a replayed assertion" },
        429: { description: "rate_limited: too many token requests from this address or for this client, or too many failed authentications; Retry-After says when to try again" },
      },
      handle: async ({ body, headers, clientAddress, locals }) => {
        const basic = basicCredentials(headers.authorization);
        const clientId = claimedClient(basic, body);
        // Counted against this client if it fails (app.ts), and admitted only within its limits.
        locals.oauthClient = clientId;
        await admit(clientAddress(), clientId);
        return { status: 200, headers: { "Cache-Control": "no-store", Pragma: "no-cache" }, body: await oauth.token(body, basic) };
      },
    }),
    route({
      method: "post",
      path: "/v1/agents/{id}/clients",
      summary: "Register an OAuth client for an agent: a client_secret (shown once) or its public JWK for private_key_jwt",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: z.object({ id: z.string().uuid() }),
      body: z
        .object({ method: z.enum(["client_secret", "private_key_jwt"]), jwk: PublicJwk.optional() })
        .strict(),
      responses: { 201: { description: "Registered", schema: ClientView.extend({ client_secret: z.string().optional() }) }, 409: { description: "Retired agent (agent_retired)" } },
      handle: async ({ params, body, principal }) => {
        const { client, secret } = await oauth.registerClient(params.id, body, actorOf(principal), scopeOf(principal));
        return { status: 201, headers: { "Cache-Control": "no-store" }, body: { ...view(client), ...(secret ? { client_secret: secret } : {}) } };
      },
    }),
    route({
      method: "get",
      path: "/v1/agents/{id}/clients",
      summary: "List an agent's OAuth clients",
      tags: ["identity"],
      access: { roles: ["agent_manager", "auditor"] },
      params: z.object({ id: z.string().uuid() }),
      responses: { 200: { description: "Clients", schema: z.object({ clients: z.array(ClientView) }) } },
      handle: ({ params, principal }) => ({ status: 200, body: { clients: oauth.listClients(params.id, scopeOf(principal)).map(view) } }),
    }),
    route({
      method: "delete",
      path: "/v1/agents/{id}/clients/{client_id}",
      summary: "Revoke an OAuth client: the access tokens it obtained stop working at the next request",
      tags: ["identity"],
      access: { roles: ["agent_manager"] },
      params: z.object({ id: z.string().uuid(), client_id: z.string().max(200) }),
      responses: { 200: { description: "Revoked", schema: ClientView } },
      handle: async ({ params, principal }) => ({ status: 200, body: view(await oauth.revokeClient(params.id, params.client_id, actorOf(principal), scopeOf(principal))) }),
    }),
    route({
      method: "post",
      path: "/v1/signing-keys/rotate",
      summary: "Rotate CLAIIM's token-signing key; the previous key verifies, and stays in the JWKS, for the overlap",
      tags: ["identity"],
      access: { roles: [] },
      body: z.object({ overlap_seconds: z.number().int().min(0).max(366 * 24 * 3600).optional(), reason: z.string().min(1).max(1000).optional() }).strict(),
      responses: { 200: { description: "Rotated", schema: z.object({ kid: z.string(), previous: z.object({ kid: z.string(), retires_at: z.string() }) }) } },
      handle: async ({ body, principal }) => ({
        status: 200,
        body: await credentials.rotateSigningKey(body.overlap_seconds ?? keyOverlapSeconds, body.reason ?? null, actorOf(principal), scopeOf(principal)),
      }),
    }),
  ];
}
