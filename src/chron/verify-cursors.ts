import type { Checkpoint, ChronStore } from "./chron-store";
import { MerkleFrontier } from "./merkle";
import { type ChronRow } from "./record";
import { WitnessHeads, type WitnessedHead, type WitnessLine } from "./witness";
import { MAX_PROBLEMS, type VerifyProblem, type VerifyScope } from "./verify-types";

/**
 * The anomalies of one verification, bounded, with what the caller may see of them: a caller
 * confined to one organisation sees where another organisation's record is broken, not what it
 * holds.
 */
export class ProblemList {
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

/**
 * Walks the witness log's heads in step with the records: at each record, the heads of that tree
 * size must name its hash, and the Merkle root of the records up to it.
 */
export class WitnessCursor {
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
export class CheckpointCursor {
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
