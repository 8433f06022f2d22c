import { canonicalize } from "../lib/canonical";
import { InputError } from "../lib/errors";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import type { KeyObject } from "node:crypto";
import type { Checkpoint, ChronFilter, ChronStore } from "./chron-store";
import { verifyCheckpoint } from "./checkpoints";
import { MerkleFrontier } from "./merkle";
import type { ChronWriter } from "./chron-writer";
import { GENESIS_HASH, indexColumns, recordHash, toRecord, type ChronContent, type ChronRecord, type ChronRow } from "./record";

export interface ListResult {
  records: ChronRecord[];
  next_cursor: string | null;
}

type Tally = { allow: number; deny: number };

export interface SummaryDay extends Tally {
  day: string;
  by_agent: (Tally & { agent_id: string | null; agent_name: string | null })[];
  by_accountable_human: (Tally & { human_id: string | null; email: string | null })[];
  by_action: (Tally & { action: string | null })[];
  by_policy_version: (Tally & { version: number | null })[];
}

export interface Summary {
  totals: Tally;
  days: SummaryDay[];
}

export interface VerifyResult {
  valid: boolean;
  checked: number;
  head: { seq: number; hash: string } | null;
  /** Signed checkpoints checked, and the last of them. */
  checkpoints: { checked: number; last: { seq: number; hash: string } | null };
  first_bad?: { seq: number; problem: string; expected?: string; found?: string };
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
   * Walks the whole chain in pages (constant memory) and reports the first record that is not
   * what the chain says it should be: a gap in sequence numbers (deleted or inserted rows), a
   * broken link (reordered rows), a hash that does not match the content (modified rows), or
   * filter columns that disagree with the content they were derived from.
   */
  async verify(): Promise<VerifyResult> {
    // Everything this server had committed when verification began must be found.
    const known = this.writer.knownHead();
    const checkpoints = new CheckpointCursor(this.store);
    let frontier = new MerkleFrontier();
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let checked = 0;
    let signed = 0;
    let lastSigned: { seq: number; hash: string } | null = null;
    let after = 0;
    const result = (first_bad?: VerifyResult["first_bad"]): VerifyResult => ({
      valid: !first_bad,
      checked,
      head: expectedSeq > 1 ? { seq: expectedSeq - 1, hash: prevHash } : null,
      checkpoints: { checked: signed, last: lastSigned },
      ...(first_bad ? { first_bad } : {}),
    });
    // After retention, the chain starts after the checkpoint the archive ended at.
    const kept = await this.store.bounds({});
    if (kept && kept.first > 1) {
      const anchor = (await this.store.checkpoints(kept.first - 2, 1))[0];
      if (anchor?.seq !== kept.first - 1 || !anchor.frontier) {
        return result({ seq: 1, problem: `missing: records 1..${kept.first - 1} are gone, and no retention checkpoint anchors what is left` });
      }
      let claims;
      try {
        claims = verifyCheckpoint(anchor.jws, this.keyFor);
        frontier = MerkleFrontier.parse(anchor.frontier);
      } catch (err) {
        return result({ seq: anchor.seq, problem: `forged checkpoint: ${(err as Error).message}` });
      }
      if (claims.hash !== anchor.hash || claims.sequence !== anchor.seq || claims.root !== frontier.root()) {
        return result({ seq: anchor.seq, problem: "forged checkpoint: the retention anchor disagrees with what it signs" });
      }
      expectedSeq = kept.first;
      prevHash = anchor.hash;
      after = anchor.seq;
      signed += 1;
      lastSigned = { seq: anchor.seq, hash: anchor.hash };
    }
    const pacer = new Pacer(this.live, INTERACTIVE);
    for (;;) {
      const rows = await this.store.list({}, after, VERIFY_PAGE);
      for (const row of rows) {
        await pacer.tick();
        const problem = this.check(row, expectedSeq, prevHash);
        if (problem) return result(problem);
        frontier.append(row.hash);
        const cp = await checkpoints.at(row.seq);
        if (cp) {
          let claims;
          try {
            claims = verifyCheckpoint(cp.jws, this.keyFor);
          } catch (err) {
            return result({ seq: cp.seq, problem: `forged checkpoint: ${(err as Error).message}` });
          }
          if (claims.sequence !== cp.seq || claims.hash !== cp.hash) return result({ seq: cp.seq, problem: "forged checkpoint: its columns disagree with what it signs" });
          if (claims.hash !== row.hash) return result({ seq: row.seq, problem: "record disagrees with its signed checkpoint", expected: claims.hash, found: row.hash });
          if (claims.root !== undefined && claims.root !== frontier.root()) {
            return result({ seq: row.seq, problem: "records disagree with the Merkle root signed at this checkpoint", expected: claims.root, found: frontier.root() });
          }
          signed += 1;
          lastSigned = { seq: cp.seq, hash: cp.hash };
        }
        checked += 1;
        expectedSeq = row.seq + 1;
        prevHash = row.hash;
      }
      if (rows.length < VERIFY_PAGE) break;
      after = rows[rows.length - 1].seq;
    }
    // Rows cut off the end leave an intact but shorter chain; checkpoints and the live writer know better.
    const beyond = await checkpoints.after(expectedSeq - 1);
    if (beyond) {
      return result({ seq: expectedSeq, problem: `missing: signed checkpoint ${beyond.seq} names a record that is no longer stored`, expected: beyond.hash });
    }
    if (known && known.seq >= expectedSeq) {
      return result({ seq: expectedSeq, problem: "missing: records committed by this server are no longer stored", expected: known.hash });
    }
    return result();
  }

  /**
   * Allows and denies per UTC day, by agent, accountable human (as recorded), action and policy
   * version. The counting is done by the database; names come from `names`.
   */
  async summary(filter: ChronFilter, names: { agent(id: string): string | null; human(id: string): string | null }): Promise<Summary> {
    const days = new Map<string, SummaryDay>();
    const totals: Tally = { allow: 0, deny: 0 };
    const bump = <T extends Tally>(list: T[], match: (t: T) => boolean, make: () => T, outcome: "allow" | "deny", n: number) => {
      let t = list.find(match);
      if (!t) list.push((t = make()));
      t[outcome] += n;
    };
    for (const c of await this.store.decisionCounts(filter)) {
      const outcome = c.decision === "allow" ? "allow" : "deny";
      let day = days.get(c.day);
      if (!day) days.set(c.day, (day = { day: c.day, allow: 0, deny: 0, by_agent: [], by_accountable_human: [], by_action: [], by_policy_version: [] }));
      day[outcome] += c.count;
      totals[outcome] += c.count;
      bump(day.by_agent, (t) => t.agent_id === c.agentId, () => ({ agent_id: c.agentId, agent_name: c.agentId && names.agent(c.agentId), allow: 0, deny: 0 }), outcome, c.count);
      bump(day.by_accountable_human, (t) => t.human_id === c.ownerId, () => ({ human_id: c.ownerId, email: c.ownerId && names.human(c.ownerId), allow: 0, deny: 0 }), outcome, c.count);
      bump(day.by_action, (t) => t.action === c.action, () => ({ action: c.action, allow: 0, deny: 0 }), outcome, c.count);
      bump(day.by_policy_version, (t) => t.version === c.policyVersion, () => ({ version: c.policyVersion, allow: 0, deny: 0 }), outcome, c.count);
    }
    const byCount = (a: Tally, b: Tally) => b.allow + b.deny - (a.allow + a.deny);
    const sorted = [...days.values()].sort((a, b) => a.day.localeCompare(b.day));
    for (const d of sorted) for (const list of [d.by_agent, d.by_accountable_human, d.by_action, d.by_policy_version]) list.sort(byCount);
    return { totals, days: sorted };
  }

  /** Checks records from..to (inclusive) against the chain, starting from `prevHash`; null when intact. */
  async verifySegment(from: number, to: number, prevHash: string): Promise<VerifyResult["first_bad"] | null> {
    let expected = from;
    let prev = prevHash;
    let after = from - 1;
    const pacer = new Pacer(this.live, INTERACTIVE);
    while (after < to) {
      const rows = await this.store.list({ toSeq: to }, after, VERIFY_PAGE);
      if (rows.length === 0) break;
      for (const row of rows) {
        await pacer.tick();
        const problem = this.check(row, expected, prev);
        if (problem) return problem;
        expected = row.seq + 1;
        prev = row.hash;
      }
      after = rows[rows.length - 1].seq;
    }
    return expected === to + 1 ? null : { seq: expected, problem: `sequence gap: expected record ${expected}` };
  }

  private check(row: ChronRow, expectedSeq: number, prevHash: string): VerifyResult["first_bad"] | null {
    if (row.seq !== expectedSeq) {
      return { seq: expectedSeq, problem: `sequence gap: expected record ${expectedSeq}, found ${row.seq}`, expected: String(expectedSeq), found: String(row.seq) };
    }
    if (row.prevHash !== prevHash) {
      return { seq: row.seq, problem: "broken link: prev_hash is not the previous record's hash", expected: prevHash, found: row.prevHash };
    }
    let content: ChronContent;
    try {
      content = JSON.parse(row.content) as ChronContent;
    } catch {
      return { seq: row.seq, problem: "content is not JSON" };
    }
    const hash = recordHash(content, row.seq, row.prevHash);
    if (hash !== row.hash) return { seq: row.seq, problem: "hash mismatch: content was modified", expected: hash, found: row.hash };
    if (canonicalize(content) !== row.content) return { seq: row.seq, problem: "content is not in canonical form" };
    const columns = indexColumns(content);
    for (const [key, value] of Object.entries(columns)) {
      const stored = row[key as keyof typeof columns];
      if (stored !== value) {
        return { seq: row.seq, problem: `column ${key} disagrees with the record's content`, expected: String(value), found: String(stored) };
      }
    }
    return null;
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
