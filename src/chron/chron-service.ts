import fs from "node:fs";
import { canonicalize } from "../lib/canonical";
import { ConflictError, InputError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import type { Checkpoint, ChronFilter, ChronStore } from "./chron-store";
import { consistencyProof, MerkleFrontier } from "./merkle";
import type { ChronWriter } from "./chron-writer";
import { canonicalRecord, GENESIS_HASH, indexColumns, sameColumn, toRecord, type ChainHead, type ChronContent, type ChronRecord, type ChronRow } from "./record";
import { tagVerdict, type ChronKeyLookup, type ChronSigner, type TagVerdict } from "./signer";
import { readWitnessLog, WitnessHeads, type RemoteWitnessStatus, type WitnessedHead, type WitnessLine } from "./witness";
import { verifyCheckpoint } from "./checkpoint-jws";

export interface ListResult {
  records: ChronRecord[];
  next_cursor: string | null;
}

type Tally = { allow: number; deny: number; approval_required: number };

/** Approvals asked for, approved, rejected, expired unanswered or unused, and spent by an allow. */
export interface ApprovalTally {
  requested: number;
  approved: number;
  rejected: number;
  expired: number;
  used: number;
}

const APPROVAL_EVENTS = ["approval.requested", "approval.approved", "approval.rejected", "approval.expired", "approval.used"] as const;

export interface SummaryDay extends Tally {
  day: string;
  approvals: ApprovalTally;
  by_agent: (Tally & { agent_id: string | null; agent_name: string | null })[];
  by_accountable_human: (Tally & { human_id: string | null; email: string | null })[];
  by_action: (Tally & { action: string | null })[];
  by_policy_version: (Tally & { version: number | null })[];
}

export interface Summary {
  totals: Tally & { approvals: ApprovalTally };
  days: SummaryDay[];
}

/** One anomaly verification found. */
export interface VerifyProblem {
  seq: number;
  problem: string;
  expected?: string;
  found?: string;
  /** Set for a caller confined to one organisation when the record is another organisation's: nothing of it is shown. */
  organization?: "other";
}

export interface VerifyResult {
  valid: boolean;
  /** Records checked: for a caller confined to one organisation, that organisation's records. */
  checked: number;
  /** The last record checked (the caller's organisation's last, when confined). */
  head: { seq: number; hash: string } | null;
  /** Signed checkpoints checked, and the last of them. */
  checkpoints: { checked: number; last: { seq: number; hash: string } | null };
  /** The first anomaly, the same as problems[0]. */
  first_bad?: VerifyProblem;
  /** Every anomaly found, first one first, at most MAX_PROBLEMS: one broken record hides nothing after it. */
  problems: VerifyProblem[];
  /** How many anomalies there were in all (more than `problems` holds when it was cut). */
  problem_count: number;
  /** Present when the caller is confined to one organisation. */
  scope?: { organization_id: string };
  /** The witness log the chain was held against: how many of its heads matched a stored record, and its last head. */
  witness?: { heads_checked: number; last: { tree_size: number; root: string; timestamp: string } | null; remote?: RemoteWitnessStatus };
}

export interface ConsistencyResult {
  first: number;
  second: number;
  first_root: string;
  second_root: string;
  /** RFC 9162 consistency proof, hex node hashes bottom up. */
  proof: string[];
  /** The checkpoints (signed tree heads) at those sizes, where CLAIIM signed one. */
  checkpoints: { first: SignedHead | null; second: SignedHead | null };
}

export interface SignedHead {
  seq: number;
  hash: string;
  kid: string;
  jws: string;
}

/** What verification checks signatures, tags and the witness with. */
export interface VerifyContext {
  keys: ChronKeyLookup;
  /** Checks the writer's tags; without it (service tests), tags are not checked. */
  signer?: Pick<ChronSigner, "kid" | "tag">;
  /** The local witness log; none: the chain is checked against its checkpoints alone. */
  witnessFile?: string | null;
  remoteWitness?: () => RemoteWitnessStatus | null;
}

/** Anomalies listed in a verification report; the count goes on past it. */
export const MAX_PROBLEMS = 100;

/** What a verification report may show, for a caller that sees everything or one organisation. */
export interface VerifyScope {
  orgId: string | null;
}

const VERIFY_PAGE = 1000;

/**
 * A page's cursor: the last seq it held, and which way the pages go. Cursors of the oldest-first
 * listing ({"after": seq}) are the ones issued before newest-first existed, and stay valid.
 */
export function encodeCursor(seq: number, order: "asc" | "desc" = "asc"): string {
  return Buffer.from(JSON.stringify(order === "asc" ? { after: seq } : { before: seq })).toString("base64url");
}

export function decodeCursor(cursor: string, order: "asc" | "desc" = "asc"): number {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { after?: unknown; before?: unknown };
    const seq = order === "asc" ? parsed.after : parsed.before;
    if (typeof seq === "number" && Number.isSafeInteger(seq) && seq >= 0) return seq;
  } catch {
    // reported below
  }
  throw new InputError("invalid_cursor", "cursor is not one this server issued for this order", [{ path: "cursor", message: "invalid cursor" }]);
}

export class ChronService {
  constructor(
    private readonly store: ChronStore,
    private readonly writer: ChronWriter,
    private readonly ctx: VerifyContext,
    /** Verification gives way to live decisions (see Pacer). */
    private readonly live: LiveWork = new LiveWork(),
  ) {}

  /** A page of records, oldest first (`asc`, chain order) or newest first (`desc`). */
  async list(filter: ChronFilter, cursor: string | undefined, limit: number, order: "asc" | "desc" = "asc"): Promise<ListResult> {
    let rows;
    if (order === "asc") rows = await this.store.list(filter, cursor ? decodeCursor(cursor) : 0, limit + 1);
    else {
      const below = Math.min(filter.toSeq ?? Infinity, cursor ? decodeCursor(cursor, "desc") - 1 : Infinity);
      rows = await this.store.list(Number.isFinite(below) ? { ...filter, toSeq: below } : filter, 0, limit + 1, "desc");
    }
    const page = rows.slice(0, limit);
    return {
      records: page.map(toRecord),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1].seq, order) : null,
    };
  }

  /**
   * Walks the whole chain in pages (constant memory) and reports every record that is not what
   * the chain says it should be: a gap in sequence numbers (deleted or inserted rows), a broken
   * link (reordered rows), a hash that does not match the content (modified rows), filter columns
   * that disagree with the content they were derived from, a writer's tag that does not match (a
   * rewritten record, even with every hash after it recomputed), checkpoints that do not verify,
   * records that disagree with the tree heads in the witness log, records missing that a
   * checkpoint, the witness or this server's writer knows of, a gap at the start that no signed
   * `chron.pruned` record accounts for, and records after the last signed head that CLAIIM did
   * not write. After a bad record it goes on from what is stored, so that one broken record cannot
   * hide later tampering. Problems are listed by record, first one first. A caller confined to one
   * organisation is told its own records' counts, and of other organisations' records only where
   * they are broken.
   */
  async verify(scope: VerifyScope = { orgId: null }): Promise<VerifyResult> {
    return (await this.walk(scope)).result;
  }

  /**
   * Start-up's check: the whole chain, as verify() does it. Returns the chain's head and the Merkle
   * frontier at it, from the same pass, for the writer and the checkpointer to go on from.
   */
  async verifyAll(options: { acceptUntaggedLegacy?: boolean } = {}): Promise<{ result: VerifyResult; head: ChainHead | null; frontier: MerkleFrontier | null }> {
    return this.walk({ orgId: null }, options.acceptUntaggedLegacy ?? false);
  }

  private async walk(scope: VerifyScope, acceptUntaggedLegacy = false): Promise<{ result: VerifyResult; head: ChainHead | null; frontier: MerkleFrontier | null }> {
    // Everything this server had committed when verification began must be found.
    const known = this.writer.knownHead();
    const checkpoints = new CheckpointCursor(this.store);
    const report = new ProblemList(scope);
    const witnessFile = this.ctx.witnessFile && fs.existsSync(this.ctx.witnessFile) ? this.ctx.witnessFile : null;
    const witness = witnessFile ? new WitnessCursor(readWitnessLog(witnessFile, this.ctx.keys), report) : null;
    const tags = new TagTrail(this.ctx.signer, acceptUntaggedLegacy);
    let frontier: MerkleFrontier | null = new MerkleFrontier();
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let checked = 0;
    let head: { seq: number; hash: string } | null = null;
    let chainHead: ChainHead | null = null;
    let signed = 0;
    let lastSigned: { seq: number; hash: string } | null = null;
    let after = 0;
    // After retention, the chain starts after the checkpoint the archive ended at.
    const kept = await this.store.bounds({});
    if (kept && kept.first > 1) {
      const anchor = (await this.store.checkpoints(kept.first - 2, 1))[0];
      if (anchor?.seq !== kept.first - 1 || !anchor.frontier) {
        report.add(null, { seq: 1, problem: `missing: records 1..${kept.first - 1} are gone, and no retention checkpoint anchors what is left` });
        frontier = null;
      } else {
        try {
          const claims = verifyCheckpoint(anchor.jws, this.ctx.keys);
          frontier = MerkleFrontier.parse(anchor.frontier);
          if (claims.hash !== anchor.hash || claims.sequence !== anchor.seq || claims.root !== frontier.root()) {
            report.add(null, { seq: anchor.seq, problem: "forged checkpoint: the retention anchor disagrees with what it signs" });
          } else {
            signed += 1;
            lastSigned = { seq: anchor.seq, hash: anchor.hash };
            tags.signed(anchor.seq);
          }
        } catch (err) {
          report.add(null, { seq: anchor.seq, problem: `forged checkpoint: ${(err as Error).message}` });
          frontier = null;
        }
      }
      const unaccounted = await this.prunedWithoutRecord(kept.first);
      if (unaccounted) report.add(null, unaccounted);
      expectedSeq = kept.first;
      prevHash = anchor?.seq === kept.first - 1 ? anchor.hash : prevHash;
      after = kept.first - 1;
    }
    const pacer = new Pacer(this.live, INTERACTIVE);
    for (;;) {
      const rows = await this.store.list({}, after, VERIFY_PAGE);
      for (const row of rows) {
        await pacer.tick();
        const problems = this.checkRow(row, expectedSeq, prevHash);
        for (const problem of problems) report.add(row.orgId, problem);
        const tagProblem = tags.row(row);
        if (tagProblem) report.add(row.orgId, tagProblem);
        // A gap leaves the Merkle tree short: roots can no longer be compared, hashes still can.
        if (row.seq !== expectedSeq) frontier = null;
        frontier?.append(row.hash);
        const cp = await checkpoints.at(row.seq);
        if (cp) {
          const problem = this.checkCheckpoint(cp, row, frontier);
          if (problem) report.add(null, problem);
          else {
            signed += 1;
            lastSigned = { seq: cp.seq, hash: cp.hash };
            tags.signed(row.seq);
          }
        }
        if (witness && (await witness.at(row, frontier))) tags.signed(row.seq);
        if (scope.orgId === null || row.orgId === scope.orgId) {
          checked += 1;
          head = { seq: row.seq, hash: row.hash };
        }
        chainHead = { seq: row.seq, hash: row.hash };
        expectedSeq = row.seq + 1;
        prevHash = row.hash;
      }
      if (rows.length < VERIFY_PAGE) break;
      after = rows[rows.length - 1].seq;
    }
    // Rows cut off the end leave an intact but shorter chain; checkpoints, the witness and the live writer know better.
    const beyond = await checkpoints.after(expectedSeq - 1);
    const witnessedBeyond = await witness?.after(expectedSeq - 1);
    if (beyond) {
      report.add(null, { seq: expectedSeq, problem: `missing: signed checkpoint ${beyond.seq} names a record that is no longer stored`, expected: beyond.hash });
    } else if (witnessedBeyond) {
      report.add(null, {
        seq: expectedSeq,
        problem: `missing: the witness holds a tree head of ${witnessedBeyond.tree_size} records signed at ${witnessedBeyond.timestamp}; records from ${expectedSeq} on are no longer stored`,
        expected: witnessedBeyond.hash,
      });
    } else if (known && known.seq >= expectedSeq) {
      report.add(null, { seq: expectedSeq, problem: "missing: records committed by this server are no longer stored", expected: known.hash });
    }
    const untagged = tags.tail();
    if (untagged) report.add(untagged.orgId, untagged.problem);
    await witness?.finish();
    const problems = report.list();
    const result: VerifyResult = {
      valid: report.count === 0,
      checked,
      head,
      checkpoints: { checked: signed, last: lastSigned },
      ...(problems.length ? { first_bad: problems[0] } : {}),
      problems,
      problem_count: report.count,
      ...(scope.orgId !== null ? { scope: { organization_id: scope.orgId } } : {}),
      ...(witness ? { witness: { heads_checked: witness.checked, last: witness.last, ...(this.ctx.remoteWitness?.() ? { remote: this.ctx.remoteWitness()! } : {}) } } : {}),
    };
    return { result, head: chainHead, frontier };
  }

  /**
   * A chain that starts after record 1 must say why in a signed record: the latest `chron.pruned`
   * record names where what is kept starts. Without one, or when more is gone than it says, the
   * gap is a deletion that only looks like retention.
   */
  private async prunedWithoutRecord(first: number): Promise<VerifyProblem | null> {
    const [row] = await this.store.latest({ kind: "event", action: "chron.pruned" }, 1);
    let pruned: { first_seq?: unknown } | null = null;
    try {
      const content = row ? (JSON.parse(row.content) as { type?: unknown; after?: { first_seq?: unknown } }) : null;
      if (content?.type === "chron.pruned" && content.after) pruned = content.after;
    } catch {
      // reported by the walk, as the record's own problem
    }
    if (!pruned) return { seq: 1, problem: `missing: records 1..${first - 1} are gone, and no signed chron.pruned record accounts for them` };
    if (pruned.first_seq === first) return null;
    const from = typeof pruned.first_seq === "number" && pruned.first_seq < first ? pruned.first_seq : 1;
    return { seq: from, problem: `missing: records ${from}..${first - 1} are gone; the last chron.pruned record (${row.seq}) says the chain starts at ${String(pruned.first_seq)}` };
  }

  /**
   * RFC 9162 §2.1.4: the consistency proof between the trees of the first `first` and `second`
   * records, from the stored hashes (the frontier at `first` from the nearest checkpoint at or
   * before it), with both roots and the checkpoints signed at those sizes, if any. A verifier
   * holding signed heads of both sizes checks that the later extends the earlier without the
   * records themselves.
   */
  async consistency(first: number, second: number): Promise<ConsistencyResult> {
    if (first > second) throw new InputError("range_inverted", "first must not be larger than second", [{ path: "first", message: "larger than second" }]);
    const head = await this.store.head();
    if (!head || second > head.seq) throw new NotFoundError("tree_size_unknown", `the chain holds ${head?.seq ?? 0} records; there is no tree of ${second}`);
    const kept = await this.store.bounds({});
    const from = await this.store.checkpointAtOrBefore(first);
    const start = from?.frontier ? MerkleFrontier.parse(from.frontier) : new MerkleFrontier();
    if (from?.frontier && verifyCheckpoint(from.jws, this.ctx.keys).root !== start.root()) throw new ServiceUnavailableError("chron_broken", `the Merkle frontier stored with checkpoint ${from.seq} disagrees with the root it signs`);
    if (kept && kept.first > start.size + 1) {
      throw new ConflictError("records_pruned", `records before ${kept.first} were archived and pruned: a consistency proof can start at ${kept.first - 1} at the earliest`);
    }
    const pacer = new Pacer(this.live, INTERACTIVE);
    const after: string[] = [];
    for (let at = start.size; at < second; ) {
      const rows = await this.store.list({ toSeq: second }, at, VERIFY_PAGE);
      if (rows.length === 0) break;
      for (const row of rows) {
        if (row.seq !== at + 1) throw new ServiceUnavailableError("chron_broken", `record ${at + 1} is missing; verify the chain`);
        if (row.seq <= first) start.append(row.hash);
        else after.push(row.hash);
        at = row.seq;
      }
      await pacer.tick();
    }
    if (start.size + after.length !== second) throw new ServiceUnavailableError("chron_broken", `the chain does not run contiguously to ${second}; verify it`);
    const firstRoot = start.root();
    const proof = consistencyProof(start, after);
    for (const h of after) start.append(h);
    const signedAt = async (seq: number) => {
      const cp = await this.store.checkpointAtOrBefore(seq);
      return cp?.seq === seq ? { seq: cp.seq, hash: cp.hash, kid: cp.kid, jws: cp.jws } : null;
    };
    return { first, second, first_root: firstRoot, second_root: start.root(), proof, checkpoints: { first: await signedAt(first), second: await signedAt(second) } };
  }

  /**
   * What only the server can see wrong with one stored row: its content against its hash, canonical
   * form and filter columns, and its writer's tag. Exports carry the content but not the columns or
   * the tag, so they report these beside the record (see ChronExporter).
   */
  storedRowProblems(row: ChronRow, parsed?: ChronContent): VerifyProblem[] {
    const out: VerifyProblem[] = [];
    let content = parsed;
    try {
      content ??= JSON.parse(row.content) as ChronContent;
    } catch {
      return [{ seq: row.seq, problem: "content is not JSON" }];
    }
    // The hash is the verifier's to check, from the exported content; the stored form and the columns only the server sees.
    const own = !canonicalText(row.content, content) ? { seq: row.seq, problem: NOT_CANONICAL } : columnProblem(row, content!);
    if (own) out.push(own);
    if (this.ctx.signer && tagVerdict(row.tag, row.hash, this.ctx.signer) === "invalid") out.push({ seq: row.seq, problem: BAD_TAG });
    return out;
  }

  /** A checkpoint against the record it names and the Merkle tree up to it (null: not comparable); null when it holds. */
  private checkCheckpoint(cp: Checkpoint, row: ChronRow, frontier: MerkleFrontier | null): VerifyProblem | null {
    let claims;
    try {
      claims = verifyCheckpoint(cp.jws, this.ctx.keys);
    } catch (err) {
      return { seq: cp.seq, problem: `forged checkpoint: ${(err as Error).message}` };
    }
    if (claims.sequence !== cp.seq || claims.hash !== cp.hash) return { seq: cp.seq, problem: "forged checkpoint: its columns disagree with what it signs" };
    if (claims.hash !== row.hash) return { seq: row.seq, problem: "record disagrees with its signed checkpoint", expected: claims.hash, found: row.hash };
    if (frontier && claims.root !== undefined && claims.root !== frontier.root()) {
      return { seq: row.seq, problem: "records disagree with the Merkle root signed at this checkpoint", expected: claims.root, found: frontier.root() };
    }
    return null;
  }

  /**
   * Allows and denies per UTC day, by agent, accountable human (as recorded), action and policy
   * version. The counting is done by the database; names come from `names`.
   */
  async summary(filter: ChronFilter, names: { agent(id: string): string | null; human(id: string): string | null }): Promise<Summary> {
    const days = new Map<string, SummaryDay>();
    const noApprovals = (): ApprovalTally => ({ requested: 0, approved: 0, rejected: 0, expired: 0, used: 0 });
    const totals: Summary["totals"] = { allow: 0, deny: 0, approval_required: 0, approvals: noApprovals() };
    const dayOf = (d: string) => {
      let day = days.get(d);
      if (!day) {
        day = { day: d, allow: 0, deny: 0, approval_required: 0, approvals: noApprovals(), by_agent: [], by_accountable_human: [], by_action: [], by_policy_version: [] };
        days.set(d, day);
      }
      return day;
    };
    const bump = <T extends Tally>(list: T[], match: (t: T) => boolean, make: () => Omit<T, keyof Tally>, outcome: keyof Tally, n: number) => {
      let t = list.find(match);
      if (!t) list.push((t = { ...make(), allow: 0, deny: 0, approval_required: 0 } as T));
      t[outcome] += n;
    };
    for (const c of await this.store.decisionCounts(filter)) {
      const outcome = c.decision === "allow" || c.decision === "approval_required" ? c.decision : "deny";
      const day = dayOf(c.day);
      day[outcome] += c.count;
      totals[outcome] += c.count;
      bump(day.by_agent, (t) => t.agent_id === c.agentId, () => ({ agent_id: c.agentId, agent_name: c.agentId && names.agent(c.agentId) }), outcome, c.count);
      bump(day.by_accountable_human, (t) => t.human_id === c.ownerId, () => ({ human_id: c.ownerId, email: c.ownerId && names.human(c.ownerId) }), outcome, c.count);
      bump(day.by_action, (t) => t.action === c.action, () => ({ action: c.action }), outcome, c.count);
      bump(day.by_policy_version, (t) => t.version === c.policyVersion, () => ({ version: c.policyVersion }), outcome, c.count);
    }
    for (const e of await this.store.eventCounts(filter, APPROVAL_EVENTS)) {
      const step = e.type.slice("approval.".length) as keyof ApprovalTally;
      dayOf(e.day).approvals[step] += e.count;
      totals.approvals[step] += e.count;
    }
    const byCount = (a: Tally, b: Tally) => b.allow + b.deny + b.approval_required - (a.allow + a.deny + a.approval_required);
    const sorted = [...days.values()].sort((a, b) => a.day.localeCompare(b.day));
    for (const d of sorted) for (const list of [d.by_agent, d.by_accountable_human, d.by_action, d.by_policy_version]) list.sort(byCount);
    return { totals, days: sorted };
  }

  /**
   * Checks records from..to (inclusive) against the chain, starting from `prevHash`; the first
   * problem, or null when intact. `unsigned`: no signed head covers them yet, so each must carry
   * CLAIIM's tag (before CLAIIM signs over them).
   */
  async verifySegment(from: number, to: number, prevHash: string, unsigned = false): Promise<VerifyProblem | null> {
    let expected = from;
    let prev = prevHash;
    let after = from - 1;
    const pacer = new Pacer(this.live, INTERACTIVE);
    while (after < to) {
      const rows = await this.store.list({ toSeq: to }, after, VERIFY_PAGE);
      if (rows.length === 0) break;
      for (const row of rows) {
        await pacer.tick();
        const [problem] = this.checkRow(row, expected, prev);
        if (problem) return problem;
        if (unsigned && this.ctx.signer && tagVerdict(row.tag, row.hash, this.ctx.signer) !== "valid") return { seq: row.seq, problem: "not written by CLAIIM: no valid writer's tag" };
        expected = row.seq + 1;
        prev = row.hash;
      }
      after = rows[rows.length - 1].seq;
    }
    return expected === to + 1 ? null : { seq: expected, problem: `sequence gap: expected record ${expected}` };
  }

  /**
   * What is wrong with one stored row, given the sequence number and hash the chain expects
   * before it: a gap, then the first of a broken link, a hash that does not cover the content, a
   * content that is not canonical, and columns that disagree with the content. After a gap the
   * link is not checked again: the gap already says why it breaks.
   */
  private checkRow(row: ChronRow, expectedSeq: number, prevHash: string): VerifyProblem[] {
    const problems: VerifyProblem[] = [];
    if (row.seq !== expectedSeq) {
      problems.push({ seq: expectedSeq, problem: `sequence gap: expected record ${expectedSeq}, found ${row.seq}`, expected: String(expectedSeq), found: String(row.seq) });
    } else if (row.prevHash !== prevHash) {
      problems.push({ seq: row.seq, problem: "broken link: prev_hash is not the previous record's hash", expected: prevHash, found: row.prevHash });
      return problems;
    }
    const own = this.checkContent(row);
    if (own) problems.push(own);
    return problems;
  }

  private checkContent(row: ChronRow): VerifyProblem | null {
    let content: ChronContent;
    try {
      content = JSON.parse(row.content) as ChronContent;
    } catch {
      return { seq: row.seq, problem: "content is not JSON" };
    }
    if (!content || typeof content !== "object" || Array.isArray(content)) return { seq: row.seq, problem: "content is not a JSON object" };
    let canonical;
    try {
      canonical = canonicalRecord(content, row.seq, row.prevHash);
    } catch (err) {
      return { seq: row.seq, problem: `content cannot be canonicalised: ${(err as Error).message}` };
    }
    if (canonical.hash !== row.hash) return { seq: row.seq, problem: "hash mismatch: content was modified", expected: canonical.hash, found: row.hash };
    if (canonical.text !== row.content) return { seq: row.seq, problem: NOT_CANONICAL };
    return columnProblem(row, content);
  }
}

const NOT_CANONICAL = "content is not in canonical form";

/** The first filter column that disagrees with the content it is derived from; null when none does. */
function columnProblem(row: ChronRow, content: ChronContent): VerifyProblem | null {
  let columns;
  try {
    columns = indexColumns(content);
  } catch {
    return { seq: row.seq, problem: "content lacks the fields a record's columns come from" };
  }
  for (const [key, value] of Object.entries(columns)) {
    const stored = row[key as keyof typeof columns];
    if (!sameColumn(stored, value)) {
      return { seq: row.seq, problem: `column ${key} disagrees with the record's content`, expected: String(value), found: String(stored) };
    }
  }
  return null;
}

/** True when every object in `value` has its keys in RFC 8785 order (UTF-16 code units). */
function keysSorted(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(keysSorted);
  if (value === null || typeof value !== "object") return true;
  const keys = Object.keys(value);
  for (let i = 1; i < keys.length; i++) if (!(keys[i - 1] < keys[i])) return false;
  return keys.every((k) => keysSorted((value as Record<string, unknown>)[k]));
}

/**
 * Is `text` the RFC 8785 form of `parsed` (its JSON.parse)? RFC 8785 writes strings and numbers as
 * JSON.stringify does, so a text that JSON.stringify gives back unchanged, with every object's keys
 * in order, is canonical; anything else is decided by canonicalising.
 */
function canonicalText(text: string, parsed: unknown): boolean {
  if (keysSorted(parsed) && JSON.stringify(parsed) === text) return true;
  try {
    return canonicalize(parsed) === text;
  } catch {
    return false;
  }
}

/**
 * The anomalies of one verification, bounded, with what the caller may see of them: a caller
 * confined to one organisation sees where another organisation's record is broken, not what it
 * holds.
 */
class ProblemList {
  private readonly problems: VerifyProblem[] = [];
  count = 0;

  constructor(private readonly scope: VerifyScope) {}

  /** `orgId` is the organisation of the record concerned; null for what concerns the chain itself. */
  add(orgId: string | null, problem: VerifyProblem): void {
    this.count += 1;
    if (this.problems.length >= MAX_PROBLEMS) return;
    const foreign = this.scope.orgId !== null && orgId !== this.scope.orgId;
    this.problems.push(foreign ? { seq: problem.seq, problem: problem.problem.replace(/:.*$/, ""), ...(orgId !== null ? { organization: "other" as const } : {}) } : problem);
  }

  /** First record first; problems of one record in the order they were found. */
  list(): VerifyProblem[] {
    return [...this.problems].sort((a, b) => a.seq - b.seq);
  }
}

const BAD_TAG = "writer's tag does not match: the record was rewritten, or not written by CLAIIM";
/** A record after the last signed head that verifies, without CLAIIM's tag: appended by someone else, or (after the last signature was broken) no longer vouched for. */
export const UNVOUCHED = "nothing vouches for this record: it follows the last signed tree head that verifies, and carries no valid writer's tag (CLAIIM tags every record it writes)";

/**
 * The writer's tags along the walk. Every record CLAIIM writes is tagged; a tag that does not
 * match its record's hash names a rewritten (or forged) record exactly, even when every hash after
 * it was recomputed; once one record is tagged, every later one must be. A signed head that
 * verifies vouches for the records up to it, and so does a valid tag (through the chain, for the
 * records before it too): records after the last thing that vouches for them were not written by
 * CLAIIM, or are no longer vouched for, and the first of them is named.
 */
export class TagTrail {
  private tagged = false;
  /** The first record after the last signed head or valid tag, with what its tag says. */
  private unvouched: { seq: number; orgId: string | null; verdict: TagVerdict; reported: boolean } | null = null;

  constructor(
    private readonly signer: Pick<ChronSigner, "kid" | "tag"> | undefined,
    /**
     * At the start that moves the Chron key out of the database only: an earlier CLAIIM did not
     * tag, so the records it wrote after its last checkpoint carry no tag; this start signs them.
     */
    private readonly acceptUntaggedLegacy = false,
  ) {}

  row(row: ChronRow): VerifyProblem | null {
    if (!this.signer) return null;
    const verdict = tagVerdict(row.tag, row.hash, this.signer);
    const problem =
      verdict === "invalid"
        ? { seq: row.seq, problem: BAD_TAG, found: row.tag ?? undefined }
        : verdict === "none" && this.tagged
          ? { seq: row.seq, problem: "no writer's tag: CLAIIM tags every record it writes, and tagged those before this one" }
          : null;
    if (verdict === "valid") this.unvouched = null;
    else this.unvouched ??= { seq: row.seq, orgId: row.orgId, verdict, reported: problem !== null };
    if (verdict !== "none") this.tagged = true;
    return problem;
  }

  /** A signed head that verifies covers every record up to `seq`. */
  signed(seq: number): void {
    if (this.unvouched && this.unvouched.seq <= seq) this.unvouched = null;
  }

  /** The first record nothing vouches for, when it was not already named for its tag. */
  tail(): { orgId: string | null; problem: VerifyProblem } | null {
    if (!this.signer || !this.unvouched || this.unvouched.reported) return null;
    if (this.acceptUntaggedLegacy && !this.tagged) return null;
    const { seq, orgId, verdict } = this.unvouched;
    return {
      orgId,
      problem: {
        seq,
        problem: verdict === "other_key" ? "unsigned: this record follows the last signed tree head, and its tag is under a key CLAIIM no longer holds" : UNVOUCHED,
      },
    };
  }
}

/**
 * Walks the witness log's heads in step with the records: at each record, the heads of that tree
 * size must name its hash, and the Merkle root of the records up to it.
 */
class WitnessCursor {
  checked = 0;
  private readonly heads: WitnessHeads;

  constructor(
    lines: AsyncIterator<WitnessLine>,
    private readonly report: ProblemList,
  ) {
    this.heads = new WitnessHeads(lines, ({ line, head, problem }) => report.add(null, { seq: head?.tree_size ?? 0, problem: `witness log line ${line}: ${problem ?? "not a witnessed tree head"}` }));
  }

  get last(): { tree_size: number; root: string; timestamp: string } | null {
    const h = this.heads.last;
    return h ? { tree_size: h.tree_size, root: h.root, timestamp: h.timestamp } : null;
  }

  /** Checks the heads at this record; true when one holds (the record is then covered by a signature). */
  async at(row: ChronRow, frontier: MerkleFrontier | null): Promise<boolean> {
    let held = false;
    for await (const head of this.heads.upTo(row.seq)) {
      // Heads below the first stored record were archived with it; those at a gap are reported by the gap.
      if (head.tree_size < row.seq) continue;
      this.checked += 1;
      if (head.hash !== row.hash) this.report.add(row.orgId, { seq: row.seq, problem: "record disagrees with the tree head the witness holds for it", expected: head.hash, found: row.hash });
      else if (frontier && frontier.root() !== head.root) {
        this.report.add(null, { seq: row.seq, problem: "records disagree with the Merkle root the witness holds at this record", expected: head.root, found: frontier.root() });
      } else held = true;
    }
    return held;
  }

  after(seq: number): Promise<WitnessedHead | null> {
    return this.heads.after(seq);
  }

  finish(): Promise<void> {
    return this.heads.rest();
  }
}

/** Walks the checkpoints in step with the records, a page at a time. */
class CheckpointCursor {
  private page: Checkpoint[] = [];
  private index = 0;
  private afterSeq = 0;
  private done = false;

  constructor(private readonly store: ChronStore) {}

  /** The checkpoint at `seq`, if there is one; checkpoints before it are passed over. */
  async at(seq: number): Promise<Checkpoint | undefined> {
    for (;;) {
      const cp = await this.peek();
      if (!cp || cp.seq > seq) return undefined;
      this.index += 1;
      if (cp.seq === seq) return cp;
    }
  }

  /** The first checkpoint after `seq`, if any. */
  async after(seq: number): Promise<Checkpoint | undefined> {
    for (;;) {
      const cp = await this.peek();
      if (!cp || cp.seq > seq) return cp;
      this.index += 1;
    }
  }

  private async peek(): Promise<Checkpoint | undefined> {
    if (this.index >= this.page.length && !this.done) {
      this.page = await this.store.checkpoints(this.afterSeq, 500);
      this.index = 0;
      if (this.page.length < 500) this.done = true;
      if (this.page.length) this.afterSeq = this.page[this.page.length - 1].seq;
    }
    return this.page[this.index];
  }
}
