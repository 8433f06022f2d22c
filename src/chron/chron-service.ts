import { canonicalize } from "../lib/canonical";
import { InputError } from "../lib/errors";
import type { ChronFilter, ChronStore } from "./chron-store";
import type { ChronWriter } from "./chron-writer";
import { GENESIS_HASH, indexColumns, recordHash, toRecord, type ChronContent, type ChronRecord, type ChronRow } from "./record";

export interface ListResult {
  records: ChronRecord[];
  next_cursor: string | null;
}

export interface VerifyResult {
  valid: boolean;
  checked: number;
  head: { seq: number; hash: string } | null;
  first_bad?: { seq: number; problem: string; expected?: string; found?: string };
}

const VERIFY_PAGE = 1000;

export function encodeCursor(seq: number): string {
  return Buffer.from(JSON.stringify({ after: seq })).toString("base64url");
}

export function decodeCursor(cursor: string): number {
  try {
    const after = (JSON.parse(Buffer.from(cursor, "base64url").toString("utf8")) as { after?: unknown }).after;
    if (typeof after === "number" && Number.isSafeInteger(after) && after >= 0) return after;
  } catch {
    // reported below
  }
  throw new InputError("invalid_cursor", "cursor is not one this server issued", [{ path: "cursor", message: "invalid cursor" }]);
}

export class ChronService {
  constructor(
    private readonly store: ChronStore,
    private readonly writer: ChronWriter,
  ) {}

  async list(filter: ChronFilter, cursor: string | undefined, limit: number): Promise<ListResult> {
    const rows = await this.store.list(filter, cursor ? decodeCursor(cursor) : 0, limit + 1);
    const page = rows.slice(0, limit);
    return {
      records: page.map(toRecord),
      next_cursor: rows.length > limit ? encodeCursor(page[page.length - 1].seq) : null,
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
    let expectedSeq = 1;
    let prevHash = GENESIS_HASH;
    let checked = 0;
    let after = 0;
    for (;;) {
      const rows = await this.store.list({}, after, VERIFY_PAGE);
      for (const row of rows) {
        const problem = this.check(row, expectedSeq, prevHash);
        if (problem) return { valid: false, checked, head: checked ? { seq: expectedSeq - 1, hash: prevHash } : null, first_bad: problem };
        checked += 1;
        expectedSeq = row.seq + 1;
        prevHash = row.hash;
      }
      if (rows.length < VERIFY_PAGE) break;
      after = rows[rows.length - 1].seq;
    }
    const head = checked ? { seq: expectedSeq - 1, hash: prevHash } : null;
    // Rows cut off the end leave an intact but shorter chain; the live writer knows better.
    if (known && (!head || known.seq > head.seq)) {
      return {
        valid: false,
        checked,
        head,
        first_bad: { seq: (head?.seq ?? 0) + 1, problem: "missing: records committed by this server are no longer stored", expected: known.hash },
      };
    }
    return { valid: true, checked, head };
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
