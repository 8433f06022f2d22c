import { createPrivateKey, KeyObject, randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { sleep, untilAnswered, type WaitOptions } from "./approval-wait";
import {
  ApprovalRequiredError,
  AuthenticationError,
  ClaiimError,
  DeniedError,
  ProtocolError,
  RequestError,
  UnavailableError,
  type Approval,
  type Decision,
  type Reason,
} from "./errors";

const JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

export interface RetryOptions {
  /** Attempts in all, the first included (default 4). */
  maxAttempts?: number;
  /** First back-off delay; each retry doubles it, with jitter (default 200 ms). */
  baseDelayMs?: number;
  /** Longest single delay, Retry-After included (default 5000 ms). */
  maxDelayMs?: number;
}

export interface ClaiimOptions {
  /** Where CLAIIM is, e.g. http://127.0.0.1:8080. */
  url: string;
  /** The agent's OAuth client id (POST /v1/agents/{id}/clients). */
  clientId: string;
  /** For a client_secret client. */
  clientSecret?: string;
  /**
   * For a private_key_jwt client: the agent's private key (PEM, a JWK with its private part, or a
   * KeyObject). It signs short client assertions here and is never sent anywhere.
   */
  privateKey?: string | KeyObject | object;
  /** The assertion's `aud`: by default the token endpoint's URL; CLAIIM also accepts its issuer (CLAIIM_ISSUER). */
  assertionAudience?: string;
  /** The `kid` to put in the assertion's header, if the key has one. */
  keyId?: string;
  /** Ask for tokens acting for this user (RFC 8693 act): the token's subject is the user, the agent its actor. */
  onBehalfOf?: string;
  retry?: RetryOptions;
  /** Per attempt (default 10 s). A timed-out decision is retried with the same Idempotency-Key. */
  timeoutMs?: number;
  /** For tests and unusual runtimes. */
  fetch?: typeof fetch;
}

/** What the agent asks CLAIIM. Who the agent is comes from its credentials, never from here. */
export interface DecisionRequest {
  action: string;
  resource: string;
  purpose: string;
  /** The skill the agent acts under: {name, version}, or "name@version". */
  skill: { name: string; version: string } | string;
  /** The user the agent acts for, when its token does not already say. */
  on_behalf_of?: string | { subject: string };
}

export interface DecideOptions {
  /** By default a new one per decide() call, reused by its retries. */
  idempotencyKey?: string;
  /** Use this approval (from an earlier approval_required answer for exactly this request): an allow spends it. */
  approvalId?: string;
  /**
   * When CLAIIM answers approval_required, wait for the human (see waitForApproval) and return the
   * decision made with the approval instead. Without it, approval_required is returned (decide) or
   * thrown as ApprovalRequiredError (guard).
   */
  waitForApproval?: Pick<WaitOptions, "timeoutMs">;
  /** Cancels the call: requests in flight and waits are aborted, and it rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface PermissionCell {
  skill: string;
  version: string;
  action: string;
  resource: string;
  allow: boolean;
  /** allow, deny, or approval_required (allowed once a human approves the exact request). */
  decision?: string;
  reasons: string[];
  reason_codes?: string[];
}

/** GET /v1/agent/permissions: the agent's registered skills and what the active policy lets it do. */
export interface Permissions {
  agent: { id: string; name: string; status: string };
  skills: { name: string; version: string }[];
  policy: { version: number; revision: string } | null;
  matrix: PermissionCell[];
}

/** Per request: cancellation, and a longer timeout for a long-poll. */
interface CallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

interface Token {
  value: string;
  /** When to fetch the next one: a margin before expiry. */
  refreshAtMs: number;
  expiresAtMs: number;
}

function skillOf(skill: DecisionRequest["skill"]): { name: string; version: string } {
  if (typeof skill !== "string") return { name: skill.name, version: skill.version };
  const at = skill.lastIndexOf("@");
  if (at <= 0 || at === skill.length - 1) throw new RequestError(`skill "${skill}" is not of the form name@version`, "validation_failed");
  return { name: skill.slice(0, at), version: skill.slice(at + 1) };
}

function algorithmOf(key: KeyObject): string {
  if (key.asymmetricKeyType === "ec") {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    if (curve === "prime256v1") return "ES256";
    if (curve === "secp384r1") return "ES384";
    throw new ClaiimError(`EC curve ${curve} is not accepted by CLAIIM; use P-256 or P-384`);
  }
  if (key.asymmetricKeyType === "rsa") return "RS256";
  throw new ClaiimError(`a ${key.asymmetricKeyType} key cannot sign CLAIIM client assertions; use EC P-256/P-384 or RSA`);
}

/**
 * The reasons of an answer, each with its code: CLAIIM sends `reasons` (texts) and `reason_codes`
 * (reason_codes[i] is the code of reasons[i]); a reason may also come as {message, code}. Codes
 * that do not line up with the reasons are left out rather than guessed.
 */
function reasonsOf(raw: unknown, rawCodes?: unknown): Reason[] | null {
  if (!Array.isArray(raw)) return null;
  const codes = Array.isArray(rawCodes) && rawCodes.length === raw.length && rawCodes.every((c) => typeof c === "string") ? (rawCodes as string[]) : null;
  const out: Reason[] = [];
  for (const [i, r] of raw.entries()) {
    if (typeof r === "string") out.push(codes ? { message: r, code: codes[i] } : { message: r });
    else if (r && typeof r === "object" && typeof (r as { message?: unknown }).message === "string") {
      const { message, code } = r as { message: string; code?: unknown };
      out.push(typeof code === "string" ? { message, code } : { message });
    } else return null;
  }
  return out;
}

/**
 * Reads a decision response strictly. Only `decision: "allow"` together with `allow: true` is an
 * allow; an answer that says one without the other is not a decision this SDK trusts.
 */
export function parseDecision(body: unknown, replayed: boolean): Decision {
  const b = body as Record<string, unknown> | null;
  const reasons = reasonsOf(b?.reasons, b?.reason_codes);
  if (!b || typeof b !== "object" || typeof b.decision_id !== "string" || typeof b.decision !== "string" || typeof b.allow !== "boolean" || !reasons) {
    throw new ProtocolError("CLAIIM's answer is not a decision (decision_id, decision, allow, reasons)");
  }
  if ((b.decision === "allow") !== (b.allow === true)) {
    throw new ProtocolError(`CLAIIM's answer is inconsistent (decision "${b.decision}" with allow ${b.allow}); it is not taken as an allow`);
  }
  const approval = b.approval && typeof b.approval === "object" && typeof (b.approval as { id?: unknown }).id === "string" ? (b.approval as Approval) : undefined;
  return {
    decisionId: b.decision_id,
    decision: b.decision,
    allowed: b.decision === "allow" && b.allow === true,
    reasons,
    policy: (b.policy as Decision["policy"]) ?? null,
    timestamp: typeof b.timestamp === "string" ? b.timestamp : "",
    chron: (b.chron as Decision["chron"]) ?? null,
    ...(approval ? { approval } : {}),
    replayed,
    raw: b,
  };
}

/** The error that stands for a decision that is not an allow. */
export function notAllowed(decision: Decision): DeniedError {
  // A deny may name an approval too (used, rejected, expired): only approval_required waits for one.
  return decision.decision === "approval_required" && decision.approval ? new ApprovalRequiredError(decision) : new DeniedError(decision);
}

/** Reads an approval (GET /v1/approvals/{id}) strictly enough to act on its status. */
function parseApproval(body: unknown): Approval {
  const b = body as Record<string, unknown> | null;
  if (!b || typeof b !== "object" || typeof b.id !== "string" || typeof b.status !== "string") throw new ProtocolError("CLAIIM's answer is not an approval (id, status)");
  return b as Approval;
}

function problemError(status: number, body: unknown, fallback: string): ClaiimError {
  const p = (body && typeof body === "object" ? body : {}) as Record<string, unknown>;
  const code = typeof p.code === "string" ? p.code : typeof p.error === "string" ? p.error : null;
  const detail = typeof p.detail === "string" ? p.detail : typeof p.error_description === "string" ? p.error_description : fallback;
  const message = `${detail}${code ? ` (${code})` : ""}`;
  if (status === 401 || p.error === "invalid_client" || p.error === "invalid_grant") return new AuthenticationError(message, code, status, p);
  if (status === 429 || status >= 500) return new UnavailableError(message, code, status, p);
  return new RequestError(message, code, status, p);
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

/**
 * A CLAIIM client for one agent. It keeps a valid access token (fetched with the agent's OAuth
 * client, refreshed before it expires, one fetch at a time), asks for decisions with an
 * Idempotency-Key, and retries with back-off on 503s and network errors, never on a deny.
 */
export class Claiim {
  private readonly base: string;
  private readonly tokenEndpoint: string;
  private readonly fetchImpl: typeof fetch;
  private readonly retry: Required<RetryOptions>;
  private readonly timeoutMs: number;
  private readonly signingKey: { key: KeyObject; alg: string } | null;
  private token: Token | null = null;
  private pendingToken: Promise<Token> | null = null;
  private tokensFetched = 0;

  constructor(private readonly options: ClaiimOptions) {
    if (!options.url) throw new ClaiimError("url is required");
    if (!options.clientId) throw new ClaiimError("clientId is required");
    if (!options.clientSecret === !options.privateKey) throw new ClaiimError("give either clientSecret or privateKey (private_key_jwt)");
    this.base = options.url.replace(/\/+$/, "");
    this.tokenEndpoint = `${this.base}/oauth/token`;
    this.fetchImpl = options.fetch ?? fetch;
    this.retry = { maxAttempts: 4, baseDelayMs: 200, maxDelayMs: 5000, ...options.retry };
    this.timeoutMs = options.timeoutMs ?? 10_000;
    if (options.privateKey) {
      const pk = options.privateKey;
      const key = pk instanceof KeyObject ? pk : typeof pk === "string" ? createPrivateKey(pk) : createPrivateKey({ key: pk as never, format: "jwk" });
      if (key.type !== "private") throw new ClaiimError("privateKey must be a private key");
      this.signingKey = { key, alg: algorithmOf(key) };
    } else this.signingKey = null;
  }

  /** How many access tokens this client has fetched (for monitoring and tests). */
  get tokenFetches(): number {
    return this.tokensFetched;
  }

  /**
   * Asks CLAIIM. A deny is a Decision with `allowed: false`, not an error; use guard() to act on it.
   * With `waitForApproval`, an approval_required answer is waited for (see waitForApproval).
   */
  async decide(request: DecisionRequest, options: DecideOptions = {}): Promise<Decision> {
    const body: Record<string, unknown> = { action: request.action, resource: request.resource, purpose: request.purpose, skill: skillOf(request.skill) };
    if (request.on_behalf_of !== undefined) body.on_behalf_of = typeof request.on_behalf_of === "string" ? { subject: request.on_behalf_of } : request.on_behalf_of;
    if (options.approvalId !== undefined) body.approval_id = options.approvalId;
    // One key for every attempt of this call: a retry after a lost answer gets the first answer back.
    const key = options.idempotencyKey ?? randomUUID();
    const { status, body: answer, headers } = await this.authorized("POST", "/v1/decisions", body, { "Idempotency-Key": `"${key}"` }, { signal: options.signal });
    if (status !== 200) throw problemError(status, answer, `POST /v1/decisions answered ${status}`);
    const decision = { ...parseDecision(answer, headers.get("idempotent-replayed") === "true"), request };
    if (options.waitForApproval && decision.decision === "approval_required" && decision.approval) {
      return this.waitForApproval(decision, { ...options.waitForApproval, signal: options.signal });
    }
    return decision;
  }

  /**
   * Runs `fn` only when CLAIIM allows the request; otherwise throws DeniedError (ApprovalRequiredError
   * when an approval is pending). With `waitForApproval`, it waits for the human first, and runs `fn`
   * only on the allow CLAIIM gives with the approval.
   */
  async guard<T>(request: DecisionRequest, fn: (decision: Decision) => T | Promise<T>, options: Omit<DecideOptions, "idempotencyKey" | "approvalId"> = {}): Promise<T> {
    const decision = await this.decide(request, options);
    if (!decision.allowed) throw notAllowed(decision);
    return fn(decision);
  }

  /**
   * Waits for a human to answer the approval of an approval_required decision (pass the Decision,
   * or the ApprovalRequiredError that guard threw), then asks the same decision again with the
   * approval, under a new Idempotency-Key, and returns CLAIIM's answer: the allow that spends the
   * approval, or a recorded deny (such as approval_used when another call used it first).
   *
   * It long-polls GET /v1/approvals/{id}?wait=30 until the approval is approved, rejected or
   * expired, or `timeoutMs` passes (by default, until the approval expires). It throws
   * ApprovalRejectedError, ApprovalExpiredError or ApprovalTimeoutError (the approval still open)
   * with the approval and the reasons, and rejects with the signal's reason when `signal` aborts.
   * Cancelled before the approval is used, the approval stays unused; cancelled while the
   * decision with the approval is in flight, CLAIIM may have recorded the allow and spent it.
   */
  async waitForApproval(pending: Decision | DeniedError, options: WaitOptions = {}): Promise<Decision> {
    const decision = pending instanceof DeniedError ? pending.decision : pending;
    if (!decision.approval || !decision.request) {
      throw new ClaiimError("waitForApproval takes an approval_required decision from decide() (or the ApprovalRequiredError from guard()), which names the approval and the request");
    }
    const approval = await untilAnswered(decision, (id, seconds, signal) => this.readApproval(id, seconds, signal), options);
    options.signal?.throwIfAborted();
    // A new decision, so a new key: CLAIIM would answer the first key with its first answer again.
    return this.decide(decision.request, { approvalId: approval.id, signal: options.signal });
  }

  /**
   * GET /v1/approvals/{id}?wait=N. WARNING: the path is built on the configured CLAIIM URL, never
   * taken from the `url` an answer names, so that the agent's token only ever goes to CLAIIM.
   */
  private async readApproval(id: string, waitSeconds: number, signal: AbortSignal): Promise<Approval> {
    const { status, body } = await this.authorized("GET", `/v1/approvals/${encodeURIComponent(id)}?wait=${waitSeconds}`, undefined, {}, { signal, timeoutMs: waitSeconds * 1000 + this.timeoutMs });
    if (status !== 200) throw problemError(status, body, `GET /v1/approvals/${id} answered ${status}`);
    return parseApproval(body);
  }

  /** What this agent may do now under the active policy (nothing is recorded). */
  async permissions(): Promise<Permissions> {
    const { status, body } = await this.authorized("GET", "/v1/agent/permissions");
    if (status !== 200) throw problemError(status, body, `GET /v1/agent/permissions answered ${status}`);
    return body as Permissions;
  }

  /** A valid access token, fetched when there is none or it is due for refresh; concurrent callers share one fetch. */
  async accessToken(): Promise<string> {
    if (this.token && Date.now() < this.token.refreshAtMs) return this.token.value;
    this.pendingToken ??= this.fetchToken().finally(() => (this.pendingToken = null));
    return (await this.pendingToken).value;
  }

  /** A request with the agent's token: a 401 makes it fetch a new token and try once more. */
  private async authorized(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, call: CallOptions = {}) {
    for (let attempt = 1; ; attempt++) {
      const token = await this.accessToken();
      call.signal?.throwIfAborted();
      const res = await this.send(
        method,
        `${this.base}${path}`,
        {
          headers: { ...headers, Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        },
        call,
      );
      if (res.status === 401 && attempt === 1) {
        if (this.token?.value === token) this.token = null;
        continue;
      }
      return res;
    }
  }

  private async fetchToken(): Promise<Token> {
    const form = new URLSearchParams({ grant_type: "client_credentials" });
    const headers: Record<string, string> = { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" };
    if (this.options.onBehalfOf) form.set("on_behalf_of", this.options.onBehalfOf);
    const { clientId, clientSecret } = this.options;
    if (this.signingKey) {
      form.set("client_id", clientId);
      form.set("client_assertion_type", JWT_BEARER);
    } else {
      // RFC 6749 §2.3.1: each part is form-urlencoded before the Basic encoding.
      const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret!)}`).toString("base64");
      headers.Authorization = `Basic ${basic}`;
    }
    const started = Date.now();
    // A fresh assertion for each attempt: CLAIIM accepts each one (its jti) once.
    const res = await this.send("POST", this.tokenEndpoint, { headers, body: () => this.tokenForm(form) });
    if (res.status !== 200) throw problemError(res.status, res.body, `the token endpoint answered ${res.status}`);
    const b = res.body as { access_token?: unknown; expires_in?: unknown };
    if (typeof b.access_token !== "string" || typeof b.expires_in !== "number" || b.expires_in <= 0) throw new ProtocolError("the token endpoint's answer has no access_token and expires_in");
    const lifetimeMs = b.expires_in * 1000;
    // Refresh a fifth of the lifetime before expiry, at most a minute before.
    const margin = Math.min(60_000, lifetimeMs / 5);
    this.tokensFetched += 1;
    this.token = { value: b.access_token, expiresAtMs: started + lifetimeMs, refreshAtMs: started + lifetimeMs - margin };
    return this.token;
  }

  private async tokenForm(form: URLSearchParams): Promise<string> {
    if (!this.signingKey) return form.toString();
    const { key, alg } = this.signingKey;
    const assertion = await new SignJWT({})
      .setProtectedHeader({ alg, typ: "JWT", ...(this.options.keyId ? { kid: this.options.keyId } : {}) })
      .setIssuer(this.options.clientId)
      .setSubject(this.options.clientId)
      .setAudience(this.options.assertionAudience ?? this.tokenEndpoint)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime("60s")
      .sign(key);
    const signed = new URLSearchParams(form);
    signed.set("client_assertion", assertion);
    return signed.toString();
  }

  /**
   * One HTTP exchange with retries: network errors, timeouts, 429 and 502-504 are retried with
   * exponential back-off and jitter (Retry-After is honoured up to maxDelayMs). Any other answer,
   * a deny included, is returned as it is. An aborted `signal` stops it at once, with its reason.
   */
  private async send(method: string, url: string, init: { headers: Record<string, string>; body?: string | (() => Promise<string>) }, call: CallOptions = {}): Promise<{ status: number; body: unknown; headers: Headers }> {
    let lastError: ClaiimError | null = null;
    const { signal } = call;
    const timeoutMs = call.timeoutMs ?? this.timeoutMs;
    for (let attempt = 1; attempt <= this.retry.maxAttempts; attempt++) {
      signal?.throwIfAborted();
      let retryAfterMs: number | null = null;
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), timeoutMs);
      const abort = () => controller.abort();
      signal?.addEventListener("abort", abort, { once: true });
      try {
        const body = typeof init.body === "function" ? await init.body() : init.body;
        const res = await this.fetchImpl(url, { method, headers: { Accept: "application/json", ...init.headers }, body, signal: controller.signal });
        const text = await res.text();
        let parsed: unknown = null;
        try {
          parsed = text ? JSON.parse(text) : null;
        } catch {
          parsed = null;
        }
        if (!RETRYABLE_STATUS.has(res.status)) return { status: res.status, body: parsed, headers: res.headers };
        lastError = problemError(res.status, parsed, `${method} ${url} answered ${res.status}`);
        const after = Number(res.headers.get("retry-after"));
        if (Number.isFinite(after) && after >= 0) retryAfterMs = after * 1000;
      } catch (err) {
        if (err instanceof ClaiimError) throw err;
        if (signal?.aborted) throw signal.reason;
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        lastError = new UnavailableError(`${method} ${url} failed: ${controller.signal.aborted ? `no answer within ${timeoutMs} ms` : (cause ?? (err as Error).message)}`, "network_error");
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener("abort", abort);
      }
      if (attempt < this.retry.maxAttempts) {
        const backoff = this.retry.baseDelayMs * 2 ** (attempt - 1);
        const jittered = backoff / 2 + Math.random() * (backoff / 2);
        await sleep(Math.min(this.retry.maxDelayMs, retryAfterMs ?? jittered), signal);
      }
    }
    throw lastError instanceof UnavailableError ? lastError : new UnavailableError(lastError?.message ?? "CLAIIM is unavailable", lastError?.code ?? null, lastError?.status ?? null, lastError?.problem ?? null);
  }
}
