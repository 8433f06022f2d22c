import { canonicalize } from "../lib/canonical";
import { canonicalRecord, indexColumns, sameColumn, type ChronContent, type ChronRow } from "./record";
import { tagVerdict, type ChronSigner, type TagVerdict } from "./signer";
import type { VerifyProblem } from "./verify-types";

export const NOT_CANONICAL = "content is not in canonical form";

/** The first filter column that disagrees with the content it is derived from; null when none does. */
export function columnProblem(row: ChronRow, content: ChronContent): VerifyProblem | null {
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
export function canonicalText(text: string, parsed: unknown): boolean {
  if (keysSorted(parsed) && JSON.stringify(parsed) === text) return true;
  try {
    return canonicalize(parsed) === text;
  } catch {
    return false;
  }
}

export const BAD_TAG = "writer's tag does not match: the record was rewritten, or not written by CLAIIM";
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
 * What is wrong with one stored row, given the sequence number and hash the chain expects
 * before it: a gap, then the first of a broken link, a hash that does not cover the content, a
 * content that is not canonical, and columns that disagree with the content. After a gap the
 * link is not checked again: the gap already says why it breaks.
 */
export function rowProblems(row: ChronRow, expectedSeq: number, prevHash: string): VerifyProblem[] {
  const problems: VerifyProblem[] = [];
  if (row.seq !== expectedSeq) {
    problems.push({ seq: expectedSeq, problem: `sequence gap: expected record ${expectedSeq}, found ${row.seq}`, expected: String(expectedSeq), found: String(row.seq) });
  } else if (row.prevHash !== prevHash) {
    problems.push({ seq: row.seq, problem: "broken link: prev_hash is not the previous record's hash", expected: prevHash, found: row.prevHash });
    return problems;
  }
  const own = contentProblem(row);
  if (own) problems.push(own);
  return problems;
}

/** The row's content against its hash, its canonical form and its filter columns; null when it holds. */
export function contentProblem(row: ChronRow): VerifyProblem | null {
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
