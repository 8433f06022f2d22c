import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, errors as joseErrors, importJWK, jwtVerify, type JWK } from "jose";
import type { Recorder } from "../chron/chron-store";
import { newEvent, type EventContent } from "../chron/record";
import { AuthenticationError, ConflictError, InputError, NotFoundError } from "../lib/errors";
import type { Logger } from "../lib/logger";
import { DuplicateKeyError } from "../db/duplicate";
import { PROBLEMS, type CodeWith } from "../lib/problems";
import { isCleanText } from "../lib/text";
import type { IdentityDirectory } from "./directory";
import { hashSecret } from "./secrets";
import type { TokenMinter } from "./tokens";
import type { Serial } from "../lib/serial";
import type { IdentityStore } from "./identity-store";
import type { AgentClient, ClientMethod } from "./model";
import type { Actor, Scope } from "../shared/principal";

export const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/** RFC 7523 leaves the lifetime of an assertion to the server: short, since each is used once. */
const MAX_ASSERTION_LIFETIME_SECONDS = 600;

export interface OAuthSettings {
  issuer: string;
  audience: string;
  accessTokenTtlSeconds: number;
  clockSkewSeconds: number;
  /** The token endpoint's URL, an accepted audience of client assertions besides the issuer. */
  tokenEndpoint: string;
}

export interface TokenRequest {
  grant_type: string;
  client_id?: string;
  client_secret?: string;
  client_assertion_type?: string;
  client_assertion?: string;
  on_behalf_of?: string;
}

/** An RFC 6749 §5.2 error, as a problem that also carries `error` and `error_description`; its code says its status. */
function oauthError(error: "invalid_request" | "invalid_client" | "invalid_grant" | "unsupported_grant_type", code: CodeWith<400> | CodeWith<401>, description: string) {
  const extra = { error, error_description: description };
  return PROBLEMS[code] === 401 ? new AuthenticationError(code as CodeWith<401>, description, extra) : new InputError(code as CodeWith<400>, description, [], extra);
}

/** Accepts public EC (P-256, P-384) and RSA (2048 bits or more) signing keys, and nothing private. */
export async function checkClientJwk(jwk: Record<string, unknown>): Promise<JWK> {
  const bad = (why: string) => new InputError("jwk_invalid", `the client's public key is not usable: ${why}`, [{ path: "jwk", message: why }]);
  if (["d", "p", "q", "dp", "dq", "qi", "k"].some((f) => f in jwk)) throw bad("it holds private key material; register the public key only");
  let alg: string;
  if (jwk.kty === "EC" && (jwk.crv === "P-256" || jwk.crv === "P-384")) alg = jwk.crv === "P-256" ? "ES256" : "ES384";
  else if (jwk.kty === "RSA" && typeof jwk.n === "string" && Buffer.from(jwk.n, "base64url").length * 8 >= 2048) alg = "RS256";
  else throw bad("only EC P-256/P-384 and RSA keys of 2048 bits or more are accepted");
  if (jwk.alg !== undefined && jwk.alg !== alg && !(jwk.kty === "RSA" && /^(RS|PS)(256|384|512)$/.test(String(jwk.alg)))) throw bad(`alg ${String(jwk.alg)} does not fit the key`);
  try {
    await importJWK({ ...(jwk as unknown as JWK), alg: (jwk.alg as string | undefined) ?? alg }, (jwk.alg as string | undefined) ?? alg);
  } catch (err) {
    throw bad((err as Error).message);
  }
  return { ...(jwk as unknown as JWK), alg: (jwk.alg as string | undefined) ?? alg };
}

/**
 * OAuth 2.0 client credentials for agents (RFC 6749 §4.4): an agent's client authenticates with a
 * secret (stored hashed) or with an assertion signed by its own key (RFC 7523 private_key_jwt),
 * and gets a short-lived access token signed by CLAIIM. Each client assertion is usable once.
 * Registrations, revocations and issued tokens are recorded in Chron.
 */
export class OAuthService {
  private readonly clients = new Map<string, AgentClient>();

  constructor(
    private readonly store: IdentityStore,
    private readonly identity: IdentityDirectory,
    private readonly minter: TokenMinter,
    private readonly settings: OAuthSettings,
    private readonly record: Recorder,
    private readonly logger: Logger,
    /** Shared with the other identity changes: client registrations and revocations go one at a time with them. */
    private readonly serial: Serial,
  ) {}

  async start(): Promise<void> {
    for (const c of await this.store.listClients()) this.clients.set(c.id, c);
  }

  /** A client as another process left it (see IdentityFollower). */
  putClient(client: AgentClient): void {
    this.clients.set(client.id, client);
  }

  client(id: string): AgentClient | undefined {
    return this.clients.get(id);
  }

  registerClient(agentId: string, input: { method: ClientMethod; jwk?: Record<string, unknown> }, actor: Actor, scope: Scope): Promise<{ client: AgentClient; secret: string | null }> {
    return this.serial.run(() => this.register(agentId, input, actor, scope));
  }

  private async register(agentId: string, input: { method: ClientMethod; jwk?: Record<string, unknown> }, actor: Actor, scope: Scope): Promise<{ client: AgentClient; secret: string | null }> {
    const agent = this.identity.agent(agentId, scope);
    if (agent.status === "retired") throw new ConflictError("agent_retired", `agent ${agent.name} is retired`);
    let secret: string | null = null;
    let publicJwk: Record<string, unknown> | null = null;
    if (input.method === "client_secret") {
      if (input.jwk) throw new InputError("jwk_unexpected", "a client_secret client takes no jwk", [{ path: "jwk", message: "not allowed with client_secret" }]);
      secret = randomBytes(32).toString("base64url");
    } else {
      if (!input.jwk) throw new InputError("jwk_missing", "a private_key_jwt client needs the agent's public key as a JWK", [{ path: "jwk", message: "required" }]);
      publicJwk = { ...(await checkClientJwk(input.jwk)) };
    }
    const client: AgentClient = {
      id: `claiim-client-${randomUUID()}`,
      agentId,
      method: input.method,
      secretHash: secret ? hashSecret(secret) : null,
      publicJwk,
      createdAt: new Date(),
      revokedAt: null,
    };
    await this.record([this.event("client.registered", actor, client, null)], (tx) => this.store.saveClient(client, tx));
    this.clients.set(client.id, client);
    return { client, secret };
  }

  listClients(agentId: string, scope: Scope): AgentClient[] {
    this.identity.agent(agentId, scope);
    return [...this.clients.values()].filter((c) => c.agentId === agentId);
  }

  revokeClient(agentId: string, clientId: string, actor: Actor, scope: Scope): Promise<AgentClient> {
    return this.serial.run(() => this.revoke(agentId, clientId, actor, scope));
  }

  private async revoke(agentId: string, clientId: string, actor: Actor, scope: Scope): Promise<AgentClient> {
    this.identity.agent(agentId, scope);
    const before = this.clients.get(clientId);
    if (!before || before.agentId !== agentId) throw new NotFoundError("client_not_found", `client ${clientId} does not exist`);
    if (before.revokedAt) return before;
    const revoked = { ...before, revokedAt: new Date() };
    await this.record([this.event("client.revoked", actor, revoked, before)], (tx) => this.store.saveClient(revoked, tx));
    this.clients.set(clientId, revoked);
    return revoked;
  }

  /** The token endpoint. `basic` is the client's HTTP Basic credential, when it sent one. */
  async token(req: TokenRequest, basic: { id: string; secret: string } | null): Promise<{ access_token: string; token_type: "Bearer"; expires_in: number }> {
    if (req.grant_type !== "client_credentials") throw oauthError("unsupported_grant_type", "grant_type_unsupported", "only grant_type=client_credentials is supported");
    const { client, assertion } = req.client_assertion_type || req.client_assertion ? await this.byAssertion(req) : this.bySecret(req, basic);
    const ctx = this.identity.agentContext(client.agentId);
    if (!ctx || ctx.agent.status !== "active") throw oauthError("invalid_grant", "agent_not_active", `the client's agent is ${ctx?.agent.status ?? "unknown"}, not active`);

    const ttl = this.settings.accessTokenTtlSeconds;
    const jti = randomUUID();
    const obo = req.on_behalf_of;
    const accessToken = this.minter.mint({ org: ctx.organization.id, cid: client.id, ...(obo ? { act: { sub: client.agentId } } : {}) }, { subject: obo ?? client.agentId, jwtid: jti, ttlSeconds: ttl });
    const expiresAt = new Date(Date.now() + ttl * 1000);
    const event = this.event("token.issued", { type: "agent", id: ctx.agent.id, name: ctx.agent.name }, client, null, {
      jti,
      expires_at: expiresAt.toISOString(),
      on_behalf_of: obo ? { subject: obo } : null,
    });
    await this.record([event], async (tx) => {
      if (assertion) await this.store.useAssertion(`${client.id}:${assertion.jti}`, assertion.expiresAt, tx);
    }).catch((err: unknown) => {
      if (err instanceof DuplicateKeyError) throw oauthError("invalid_client", "assertion_replayed", "this client assertion (jti) was already used");
      throw err;
    });
    this.logger.info("access token issued", { agent_id: client.agentId, client_id: client.id, jti, method: client.method });
    return { access_token: accessToken, token_type: "Bearer", expires_in: ttl };
  }

  private bySecret(req: TokenRequest, basic: { id: string; secret: string } | null): { client: AgentClient; assertion: null } {
    const id = basic?.id ?? req.client_id;
    const secret = basic?.secret ?? req.client_secret;
    if (!id || !secret) throw oauthError("invalid_client", "client_authentication_missing", "authenticate the client with HTTP Basic, client_secret, or a client assertion");
    const client = this.usable(id, "client_secret");
    const given = Buffer.from(hashSecret(secret), "hex");
    if (!timingSafeEqual(given, Buffer.from(client.secretHash!, "hex"))) throw oauthError("invalid_client", "client_secret_invalid", "the client secret is not valid");
    return { client, assertion: null };
  }

  private async byAssertion(req: TokenRequest): Promise<{ client: AgentClient; assertion: { jti: string; expiresAt: Date } }> {
    if (req.client_assertion_type !== JWT_BEARER || !req.client_assertion) {
      throw oauthError("invalid_request", "client_assertion_type_invalid", `send client_assertion_type=${JWT_BEARER} with a client_assertion`);
    }
    let clientId: string;
    let alg: string | undefined;
    try {
      clientId = String(decodeJwt(req.client_assertion).iss ?? "");
      alg = decodeProtectedHeader(req.client_assertion).alg;
    } catch {
      throw oauthError("invalid_client", "client_assertion_invalid", "the client assertion is not a JWT");
    }
    if (req.client_id && req.client_id !== clientId) throw oauthError("invalid_client", "client_assertion_invalid", "client_id does not match the assertion's issuer");
    const client = this.usable(clientId, "private_key_jwt");
    const jwk = client.publicJwk as unknown as JWK;
    if (alg !== jwk.alg) throw oauthError("invalid_client", "client_assertion_invalid", `the assertion must be signed with ${jwk.alg}`);
    const skew = this.settings.clockSkewSeconds;
    let payload;
    try {
      ({ payload } = await jwtVerify(req.client_assertion, await importJWK(jwk, jwk.alg), {
        issuer: clientId,
        subject: clientId,
        audience: [this.settings.issuer, this.settings.tokenEndpoint],
        clockTolerance: skew,
        requiredClaims: ["jti", "exp"],
      }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw oauthError("invalid_client", "assertion_expired", "the client assertion has expired (beyond the tolerated clock skew)");
      if (err instanceof joseErrors.JWTClaimValidationFailed) {
        const code = err.claim === "aud" ? "assertion_audience_invalid" : err.claim === "nbf" || err.claim === "iat" ? "assertion_clock_skew" : "client_assertion_invalid";
        throw oauthError("invalid_client", code, `the client assertion's ${err.claim} claim is not acceptable: ${err.message}`);
      }
      throw oauthError("invalid_client", "client_assertion_invalid", `the client assertion does not verify: ${(err as Error).message}`);
    }
    const now = Math.floor(Date.now() / 1000);
    if (typeof payload.iat === "number" && payload.iat > now + skew) {
      throw oauthError("invalid_client", "assertion_clock_skew", `the client assertion was issued ${payload.iat - now}s in the future, beyond the tolerated ${skew}s`);
    }
    if (payload.exp! - now > MAX_ASSERTION_LIFETIME_SECONDS + skew) {
      throw oauthError("invalid_client", "assertion_lifetime_too_long", `a client assertion may live ${MAX_ASSERTION_LIFETIME_SECONDS}s at most`);
    }
    const jti = String(payload.jti);
    if (!isCleanText(jti) || jti.length > 512) {
      throw new InputError("invalid_text", "the client assertion's jti must be well-formed text without NUL, at most 512 characters", [{ path: "client_assertion.jti", message: "not acceptable text" }], {
        error: "invalid_request",
        error_description: "the client assertion's jti is not acceptable text",
      });
    }
    return { client, assertion: { jti, expiresAt: new Date(payload.exp! * 1000) } };
  }

  private usable(id: string, method: ClientMethod): AgentClient {
    const client = this.clients.get(id);
    if (!client || client.method !== method) throw oauthError("invalid_client", "client_unknown", `no ${method} client ${id} is registered`);
    if (client.revokedAt) throw oauthError("invalid_client", "client_revoked", "the client has been revoked");
    return client;
  }

  private event(type: string, actor: Actor, client: AgentClient, before: AgentClient | null, after?: unknown): EventContent {
    const ctx = this.identity.agentContext(client.agentId)!;
    const state = (c: AgentClient) => ({ agent_id: c.agentId, method: c.method, public_jwk: c.publicJwk, revoked_at: c.revokedAt?.toISOString() ?? null });
    return newEvent({
      type,
      actor,
      subject: { type: "client", id: client.id, name: ctx.agent.name },
      organization: { id: ctx.organization.id, slug: ctx.organization.slug },
      agent: { id: ctx.agent.id, name: ctx.agent.name, status: ctx.agent.status },
      accountable_human: ctx.owner ? { id: ctx.owner.id, name: ctx.owner.name, email: ctx.owner.email, status: ctx.owner.status } : null,
      before: before && state(before),
      after: after ?? state(client),
    });
  }
}
