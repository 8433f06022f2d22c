import { InputError } from "../lib/errors";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import type { KeyObject } from "node:crypto";
import type { Checkpoint, ChronFilter, ChronStore } from "./chron-store";
import { verifyCheckpoint } from "./checkpoints";
import { MerkleFrontier } from "./merkle";
import type { ChronWriter } from "./chron-writer";
import { canonicalRecord, GENESIS_HASH, indexColumns, sameColumn, toRecord, type ChronContent, type ChronRecord, type ChronRow } from "./record";

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
    private readonly keyFor: (kid: string) => KeyObject | undefined,
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
   * that disagree with the content they were derived from, checkpoints that do not verify. After
   * a bad record it goes on from what is stored, so that one broken record cannot hide later
   * tampering. A caller confined to one organisation is told its own records' counts, and of
   * other organisations' records only where they are broken.
   */
  async verify(scope: VerifyScope = { orgId: null }): Promise<VerifyResult> {
    // Everything this server had committed when verification began must be found.
    const known = this.writer.knownHead();
    const checkpoints = new CheckpointCursor(this.store);
    const report = new ProblemList(scope);
    let frontier: MerkleFrontier | null = new MerkleFrontier();
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let checked = 0;
    let head: { seq: number; hash: string } | null = null;
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
          const claims = verifyCheckpoint(anchor.jws, this.keyFor);
          frontier = MerkleFrontier.parse(anchor.frontier);
          if (claims.hash !== anchor.hash || claims.sequence !== anchor.seq || claims.root !== frontier.root()) {
            report.add(null, { seq: anchor.seq, problem: "forged checkpoint: the retention anchor disagrees with what it signs" });
          } else {
            signed += 1;
            lastSigned = { seq: anchor.seq, hash: anchor.hash };
          }
        } catch (err) {
          report.add(null, { seq: anchor.seq, problem: `forged checkpoint: ${(err as Error).message}` });
          frontier = null;
        }
      }
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
          }
        }
        if (scope.orgId === null || row.orgId === scope.orgId) {
          checked += 1;
          head = { seq: row.seq, hash: row.hash };
        }
        expectedSeq = row.seq + 1;
        prevHash = row.hash;
      }
      if (rows.length < VERIFY_PAGE) break;
      after = rows[rows.length - 1].seq;
    }
    // Rows cut off the end leave an intact but shorter chain; checkpoints and the live writer know better.
    const beyond = await checkpoints.after(expectedSeq - 1);
    if (beyond) {
      report.add(null, { seq: expectedSeq, problem: `missing: signed checkpoint ${beyond.seq} names a record that is no longer stored`, expected: beyond.hash });
    } else if (known && known.seq >= expectedSeq) {
      report.add(null, { seq: expectedSeq, problem: "missing: records committed by this server are no longer stored", expected: known.hash });
    }
    const problems = report.list();
    return {
      valid: report.count === 0,
      checked,
      head,
      checkpoints: { checked: signed, last: lastSigned },
      ...(problems.length ? { first_bad: problems[0] } : {}),
      problems,
      problem_count: report.count,
      ...(scope.orgId !== null ? { scope: { organization_id: scope.orgId } } : {}),
    };
  }

  /** A checkpoint against the record it names and the Merkle tree up to it (null: not comparable); null when it holds. */
  private checkCheckpoint(cp: Checkpoint, row: ChronRow, frontier: MerkleFrontier | null): VerifyProblem | null {
    let claims;
    try {
      claims = verifyCheckpoint(cp.jws, this.keyFor);
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

  /** Checks records from..to (inclusive) against the chain, starting from `prevHash`; the first problem, or null when intact. */
  async verifySegment(from: number, to: number, prevHash: string): Promise<VerifyProblem | null> {
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
    if (canonical.text !== row.content) return { seq: row.seq, problem: "content is not in canonical form" };
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

  list(): VerifyProblem[] {
    return this.problems;
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
