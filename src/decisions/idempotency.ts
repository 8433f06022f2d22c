import { createHash } from "node:crypto";
import { canonicalize } from "../lib/canonical";
import { ConflictError, InputError } from "../lib/errors";
import type { ChronRow, DecisionContent } from "../chron/record";
import type { DecisionResponse } from "./model";

/**
 * Idempotency-Key for POST /v1/decisions (draft-ietf-httpapi-idempotency-key-header): a retried
 * request with the same key and the same request gets the first answer, with its Chron record,
 * instead of a second decision; the same key with another request is a 409.
 *
 * Keys are remembered in memory, per agent, for `ttlMs` and at most `maxKeys` of them (the oldest
 * go first), so the decision path reads no database. Each decision made under a key carries it in
 * its Chron record (`idempotency_key`); at start-up the index is refilled from the most recent
 * keyed decisions within the TTL, so a retry that spans a restart still gets the first answer.
 *
 * WARNING: a key is claimed synchronously, before the first await of the decision, so concurrent
 * duplicates wait for the one decision in flight: exactly one Chron record per key.
 */
export interface IdempotencySettings {
  ttlMs: number;
  maxKeys: number;
  /** Where approvals are polled: a reloaded approval_required answer names its approval's URL. */
  publicUrl?: string;
}

export const DEFAULT_IDEMPOTENCY: IdempotencySettings = { ttlMs: 24 * 3600 * 1000, maxKeys: 100_000 };

/** What a key is bound to: the request as the policy saw it, with the user acted for. */
export interface RequestView {
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
  on_behalf_of: string | null;
}

const FIELDS = ["action", "resource", "purpose", "skill", "on_behalf_of"] as const;
type Field = (typeof FIELDS)[number];

interface Entry {
  /** The fields the digest covers: all of them, or, for a key reloaded from Chron, those that redaction left intact. */
  fields: readonly Field[];
  digest: string;
  expiresMs: number;
  /** The answer, or the decision in flight. */
  response: DecisionResponse | Promise<DecisionResponse>;
}

function digestOf(view: RequestView, fields: readonly Field[]): string {
  return createHash("sha256").update(canonicalize(fields.map((f) => view[f]))).digest("base64url");
}

/**
 * A key is 1 to 255 visible ASCII characters. The header may carry it as a structured-field
 * string (RFC 8941, `"…"`, as the draft has it) or bare; both name the same key.
 */
export function parseIdempotencyKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  const value = header.trim();
  const quoted = /^"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"$/.exec(value);
  const key = quoted ? quoted[1].replace(/\\(["\\])/g, "$1") : value;
  if (!/^[\x21-\x7e]{1,255}$/.test(key) || (!quoted && key.includes('"'))) {
    throw new InputError("idempotency_key_invalid", "Idempotency-Key must be 1 to 255 visible ASCII characters, bare or as a quoted string", [
      { path: "Idempotency-Key", message: "1 to 255 visible ASCII characters" },
    ]);
  }
  return key;
}

/**
 * The response a recorded decision was given, from its record: the approval it concerns comes
 * back as it was then (id, status, expiry, where to poll); who may approve is in the approval.
 */
export function responseOf(row: Pick<ChronRow, "seq" | "hash">, d: DecisionContent, publicUrl = ""): DecisionResponse {
  return {
    decision_id: d.decision_id,
    decision: d.decision,
    allow: d.decision === "allow",
    reasons: d.reasons,
    reason_codes: d.reason_codes ?? [],
    ...(d.approval ? { approval: { id: d.approval.id, status: d.approval.status, expires_at: d.approval.expires_at, url: `${publicUrl}/v1/approvals/${d.approval.id}` } } : {}),
    policy: d.policy,
    timestamp: d.timestamp,
    chron: { seq: row.seq, hash: row.hash },
  };
}

export class IdempotencyIndex {
  // Insertion order is age order: the oldest entry is always first.
  private readonly entries = new Map<string, Entry>();
  // Answers share their policy reference (a few per revision, not one per key): memory per key matters at 100,000 keys.
  private readonly policies = new Map<string, DecisionResponse["policy"]>();

  constructor(
    private readonly settings: IdempotencySettings = DEFAULT_IDEMPOTENCY,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /**
   * Runs `decide` once per (agent, key): a repeat with the same request gets the same answer
   * (replayed: true), waiting for it while it is in flight; another request is a ConflictError.
   * A decision that fails (e.g. Chron could not record it, 503) releases its key, so that the
   * retry decides afresh.
   */
  async run(agentId: string, key: string, view: RequestView, decide: () => Promise<DecisionResponse>): Promise<{ response: DecisionResponse; replayed: boolean }> {
    const now = this.now();
    this.evict(now);
    const id = `${agentId}\0${key}`;
    const found = this.entries.get(id);
    if (found) {
      if (digestOf(view, found.fields) !== found.digest) {
        throw new ConflictError("idempotency_key_reused", "this Idempotency-Key was used for a different request; use a new key for a new request");
      }
      return { response: await found.response, replayed: true };
    }
    const response = decide();
    const entry: Entry = { fields: FIELDS, digest: digestOf(view, FIELDS), expiresMs: now + this.settings.ttlMs, response };
    this.entries.set(id, entry);
    this.trim();
    response.then(
      (answer) => {
        if (this.entries.get(id) === entry) entry.response = this.compact(answer);
      },
      () => {
        if (this.entries.get(id) === entry) this.entries.delete(id);
      },
    );
    return { response: await response, replayed: false };
  }

  /**
   * Remembers the keyed decisions among `rows` (chain order, oldest first), as made at their
   * recorded time. Fields that a redaction rule erased or masked cannot be compared and are left
   * out of what binds the key.
   */
  load(rows: ChronRow[]): number {
    const now = this.now();
    let loaded = 0;
    for (const row of rows) {
      let d: DecisionContent;
      try {
        d = JSON.parse(row.content) as DecisionContent;
      } catch {
        continue;
      }
      if (d.kind !== "decision" || typeof d.idempotency_key !== "string" || !d.agent?.id) continue;
      const expiresMs = Date.parse(d.timestamp) + this.settings.ttlMs;
      if (!(expiresMs > now)) continue;
      const redacted = [...(d.erased ?? []), ...(d.masked ?? [])];
      const intact = FIELDS.filter((f) => !redacted.some((p) => p === `/${f}` || p.startsWith(`/${f}/`)));
      const fields = intact.length === FIELDS.length ? FIELDS : intact;
      const view: RequestView = { action: d.action, resource: d.resource, purpose: d.purpose, skill: d.skill, on_behalf_of: d.on_behalf_of?.subject ?? null };
      const id = `${d.agent.id}\0${d.idempotency_key}`;
      this.entries.delete(id);
      this.entries.set(id, { fields, digest: digestOf(view, fields), expiresMs, response: this.compact(responseOf(row, d, this.settings.publicUrl)) });
      loaded += 1;
    }
    this.trim();
    return loaded;
  }

  /** The same answer, with its policy reference shared among the answers of one revision. */
  private compact(answer: DecisionResponse): DecisionResponse {
    const key = `${answer.policy.version}\0${answer.policy.revision}\0${answer.policy.digest}`;
    let policy = this.policies.get(key);
    if (!policy) {
      if (this.policies.size >= 1000) this.policies.clear();
      policy = answer.policy;
      this.policies.set(key, policy);
    }
    return policy === answer.policy ? answer : { ...answer, policy };
  }

  private evict(now: number): void {
    for (const [id, entry] of this.entries) {
      if (entry.expiresMs > now) break;
      this.entries.delete(id);
    }
  }

  private trim(): void {
    for (const id of this.entries.keys()) {
      if (this.entries.size <= this.settings.maxKeys) break;
      this.entries.delete(id);
    }
  }
}
