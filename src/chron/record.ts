import { randomUUID } from "node:crypto";
import { canonicalize, sha256Hex } from "../lib/canonical";
import { isCleanText } from "../lib/text";
import type { Actor } from "../shared/principal";

/** prev_hash of the first record. */
export const GENESIS_HASH = "0".repeat(64);

/** approval_required: nothing is allowed yet; a human must approve this exact request first. */
export type Decision = "allow" | "deny" | "approval_required";

export interface PolicyRef {
  version: number | null;
  revision: string | null;
  digest: string | null;
}

/**
 * A decision as Chron keeps it. Field names follow OPA's decision-log events (decision_id,
 * timestamp, path, input, bundles, requested_by) where they fit.
 */
export interface DecisionContent {
  kind: "decision";
  decision_id: string;
  timestamp: string;
  path: string;
  organization: { id: string; slug: string };
  agent: { id: string; name: string; status: string };
  /** The accountable human as recorded at the moment of the decision. */
  accountable_human: { id: string; name: string; email: string; status: string } | null;
  /** The user the agent acted for, if any (RFC 8693 act semantics). */
  on_behalf_of: { subject: string } | null;
  requested_by: { credential_id: string };
  action: string;
  resource: string;
  purpose: string;
  skill: { name: string; version: string };
  decision: Decision;
  reasons: string[];
  /**
   * reason_codes[i] is the stable code of reasons[i] (see docs/api.md's table). Absent from
   * records written before codes existed; their reasons are unchanged.
   */
  reason_codes?: string[];
  /** The approval this decision asked for (approval_required), spent (allow) or refused to use (deny). */
  approval?: DecisionApproval;
  /** What the policy answered when an approval, given or refused, made the decision differ from it (approval_required). */
  policy_decision?: Decision;
  policy: PolicyRef;
  bundles: Record<string, { revision: string }>;
  input: unknown;
  /** Shadow mode: what the shadow version decided on the same input. It was not enforced. */
  shadow?: ShadowResult;
  /** JSON Pointers that redaction rules erased from this record, or masked in it (OPA's erased/masked). */
  erased?: string[];
  masked?: string[];
  /** The Idempotency-Key the agent sent with the request, if any: a retry with it gets this decision again. */
  idempotency_key?: string;
  /** With tracing on (OpenTelemetry), the trace and span of the request that asked, as OPA's decision logs carry them. */
  trace_id?: string;
  span_id?: string;
}

/** What the policy answered, before an approval was looked at. */
export function policyOutcome(d: Pick<DecisionContent, "decision" | "policy_decision">): Decision {
  return d.policy_decision ?? d.decision;
}

/** Enough of a recorded decision to find it and read what it was about, for reports that list decisions. */
export interface DecisionRef {
  seq: number;
  decision_id: string;
  timestamp: string;
  agent: { id: string; name: string };
  action: string;
  resource: string;
}

export function decisionRef(seq: number, d: DecisionContent): DecisionRef {
  return { seq, decision_id: d.decision_id, timestamp: d.timestamp, agent: { id: d.agent.id, name: d.agent.name }, action: d.action, resource: d.resource };
}

/** Who said yes or no to an approval: the credential that called, and the human it is or spoke for. */
export interface ApproverRef {
  actor: Actor;
  human: { id: string; name: string; email: string } | null;
}

/**
 * An approval as a decision record names it: asked for (status pending, with who may approve and
 * until when), spent by this allow (status used, with who approved it and the decision that asked
 * for it), or refused (the status it had, e.g. expired).
 */
export interface DecisionApproval {
  id: string;
  status: string;
  expires_at: string;
  /** The approval_required decision that asked for it. */
  requested_decision_id?: string;
  approvers?: { accountable_human: boolean; roles: string[]; humans: string[] };
  approved_by?: ApproverRef;
  approved_at?: string;
}

export interface ShadowResult {
  version: number;
  revision: string;
  decision: Decision;
  agrees: boolean;
  /** Only where the shadow disagrees with the decision made. */
  reasons?: string[];
}

/**
 * A change to CLAIIM's own state (an agent suspended, a credential revoked, a policy activated),
 * recorded with who did it and the state before and after. Events about an agent carry the agent
 * and its accountable human, so that filtering by agent or owner finds them beside its decisions.
 */
export interface EventContent {
  kind: "event";
  event_id: string;
  timestamp: string;
  /** `<subject>.<verb>`, e.g. agent.suspended. */
  type: string;
  organization: { id: string; slug: string } | null;
  actor: Actor;
  subject: { type: string; id: string; name: string };
  agent: { id: string; name: string; status: string } | null;
  accountable_human: { id: string; name: string; email: string; status: string } | null;
  reason: string | null;
  before: unknown;
  after: unknown;
}

export type ChronContent = DecisionContent | EventContent;

/** A new event, stamped now. */
export function newEvent(
  e: Pick<EventContent, "type" | "actor" | "subject" | "before" | "after"> & Partial<Pick<EventContent, "organization" | "agent" | "accountable_human" | "reason">>,
): EventContent {
  return {
    kind: "event",
    event_id: randomUUID(),
    timestamp: new Date().toISOString(),
    type: e.type,
    organization: e.organization ?? null,
    actor: e.actor,
    subject: e.subject,
    agent: e.agent ?? null,
    accountable_human: e.accountable_human ?? null,
    reason: e.reason ?? null,
    before: e.before,
    after: e.after,
  };
}

/** A row as stored: the canonical content plus the columns derived from it for filtering. */
export interface ChronRow {
  seq: number;
  id: string;
  kind: string;
  tsMs: number;
  orgId: string | null;
  agentId: string | null;
  ownerId: string | null;
  action: string | null;
  decision: string | null;
  policyVersion: number | null;
  /** RFC 8785 canonical JSON of the content. */
  content: string;
  prevHash: string;
  hash: string;
  /** The writer's tag (see ChronSigner.tag); not part of the record, which the hash covers. Null before tags existed. */
  tag: string | null;
  /**
   * The Idempotency-Key this decision claims for its agent, in a column under a unique index (the
   * content carries it too): a second record of the agent with the key is refused by the database,
   * whichever process writes it. Null or absent on records without one.
   */
  idempotencyKey?: string | null;
}

/** A record as the API shows it. */
export type ChronRecord = ChronContent & { seq: number; prev_hash: string; hash: string };

export interface ChainHead {
  seq: number;
  hash: string;
}

export type IndexColumns = Pick<ChronRow, "id" | "kind" | "tsMs" | "orgId" | "agentId" | "ownerId" | "action" | "decision" | "policyVersion">;

/** The filter columns of a record, derived from its content alone. */
export function indexColumns(content: ChronContent): IndexColumns {
  const decision = content.kind === "decision";
  return {
    id: decision ? content.decision_id : content.event_id,
    kind: content.kind,
    tsMs: Date.parse(content.timestamp),
    orgId: content.organization?.id ?? null,
    agentId: content.agent?.id ?? null,
    ownerId: content.accountable_human?.id ?? null,
    action: decision ? content.action : content.type,
    decision: decision ? content.decision : null,
    policyVersion: decision ? (content.policy?.version ?? null) : null,
  };
}

/**
 * WARNING: this is the chain's definition. A record's hash is the SHA-256 of the canonical JSON of
 * its content together with its sequence number and the previous record's hash. Changing it breaks
 * every existing chain.
 */
export function recordHash(content: ChronContent, seq: number, prevHash: string): string {
  return sha256Hex(canonicalize({ ...content, seq, prev_hash: prevHash }));
}

/**
 * The canonical text of a content, and the hash recordHash() would give it, from one
 * canonicalisation: RFC 8785 writes an object's members sorted by key, so the hashed text is the
 * content's members with `prev_hash` and `seq` put in their places. `content` must not have
 * members of those names (no ChronContent does). A property test holds it equal to recordHash().
 */
export function canonicalRecord(content: ChronContent, seq: number, prevHash: string): { text: string; hash: string } {
  const prepared = prepareRecord(content);
  return { text: prepared.text, hash: chainedHash(prepared, seq, prevHash) };
}

/** A content canonicalised once, before it has a place in the chain (see canonicalRecord). */
export interface PreparedRecord {
  content: ChronContent;
  columns: IndexColumns;
  text: string;
  /**
   * The canonical members of the content (`"key":value`, comma-joined) whose keys sort before
   * `prev_hash`, between `prev_hash` and `seq`, and after `seq`: where the hashed text puts the two.
   */
  around: [string, string, string];
}

/** The costly part of sealing, which does not depend on the record's place: done outside the writers' lock. */
export function prepareRecord(content: ChronContent, columns: IndexColumns = indexColumns(content)): PreparedRecord {
  const members: string[] = [];
  const around: [string[], string[], string[]] = [[], [], []];
  // The same order as canonicalize's: UTF-16 code units, which is what Array.prototype.sort and < compare.
  for (const key of Object.keys(content).sort()) {
    const value = (content as unknown as Record<string, unknown>)[key];
    if (value === undefined) continue;
    const member = `${JSON.stringify(key)}:${canonicalize(value)}`;
    members.push(member);
    around[key < "prev_hash" ? 0 : key < "seq" ? 1 : 2].push(member);
  }
  return { content, columns, text: `{${members.join(",")}}`, around: [around[0].join(","), around[1].join(","), around[2].join(",")] };
}

/** recordHash() of a prepared content at `seq` after `prevHash`: its members with `prev_hash` and `seq` in their sorted places. */
function chainedHash(prepared: PreparedRecord, seq: number, prevHash: string): string {
  const [before, between, after] = prepared.around;
  const seqText = Number.isSafeInteger(seq) ? String(seq) : canonicalize(seq);
  const chained = `{${before}${before ? "," : ""}"prev_hash":${JSON.stringify(prevHash)}${between ? "," : ""}${between},"seq":${seqText}${after ? "," : ""}${after}}`;
  return sha256Hex(chained);
}

/** A content that cannot become a record: a column could not store what the content says. */
export class UnsealableRecordError extends Error {}

/**
 * The filter columns of a record, checked: every text column must be storable as it is, or it
 * would disagree with the content it was derived from (see lib/text.ts). The content itself is
 * always storable: canonical JSON escapes lone surrogates and control characters.
 */
export function checkedColumns(content: ChronContent): IndexColumns {
  const columns = indexColumns(content);
  for (const [name, value] of Object.entries(columns)) {
    if (typeof value === "string" && !isCleanText(value)) throw new UnsealableRecordError(`record column ${name} is not well-formed text without NUL`);
  }
  if (!Number.isFinite(columns.tsMs)) throw new UnsealableRecordError("record timestamp is not a date");
  return columns;
}

/**
 * True when a stored filter column matches the value derived from the content. Columns derived
 * from text that was not well-formed (accepted before CLAIIM refused such text) were stored with
 * each lone surrogate replaced: by one U+FFFD (PostgreSQL) or read back from SQLite as three.
 * Those columns carry no weight (the hash covers the content, not the columns), so such a record
 * still verifies; anything else that differs does not.
 */
export function sameColumn(stored: unknown, derived: unknown): boolean {
  if (stored === derived) return true;
  if (typeof stored !== "string" || typeof derived !== "string" || derived.isWellFormed()) return false;
  return stored === derived.toWellFormed() || stored === derived.replace(/[\ud800-\udfff]/gu, "\ufffd\ufffd\ufffd");
}

/** Chains contents after `head`, in order, each tagged by `tagger` (see ChronSigner.tag). Each content must have passed checkedColumns(). */
export function seal(contents: ChronContent[], head: ChainHead | null, tagger?: (hash: string) => string): ChronRow[] {
  return sealPrepared(contents.map((c) => prepareRecord(c)), head, tagger);
}

/** The Idempotency-Key a content claims in the database: a decision's, when it was asked with one. */
export function claimedKey(content: ChronContent): string | null {
  return content.kind === "decision" ? (content.idempotency_key ?? null) : null;
}

/** seal() of contents prepared beforehand: only hashing and tagging are left, cheap enough to run under the writers' lock. */
export function sealPrepared(prepared: PreparedRecord[], head: ChainHead | null, tagger?: (hash: string) => string): ChronRow[] {
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? GENESIS_HASH;
  return prepared.map((p) => {
    seq += 1;
    const hash = chainedHash(p, seq, prevHash);
    const row: ChronRow = { seq, ...p.columns, content: p.text, prevHash, hash, tag: tagger ? tagger(hash) : null, idempotencyKey: claimedKey(p.content) };
    prevHash = hash;
    return row;
  });
}

export function toRecord(row: ChronRow): ChronRecord {
  return { seq: row.seq, ...(JSON.parse(row.content) as ChronContent), prev_hash: row.prevHash, hash: row.hash };
}
