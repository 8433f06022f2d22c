import { linksAfter, type ChronLink, type ChronStore } from "./chron-store";
import { MerkleFrontier } from "./merkle";
import { GENESIS_HASH, type ChainHead, type ChronRow } from "./record";
import { tagVerdict, type ChronSigner } from "./signer";
import { ChronBrokenError, missingRecord, type InMemoryHead } from "./stored-tree";

/**
 * The Merkle tree of the records committed, held in memory as its frontier: extended by this
 * process's own commits as they happen, and by other processes' records only after each is read
 * back and checked (catchUp). The Checkpointer signs heads from it.
 */
export class CommittedTree implements InMemoryHead {
  /** The record the frontier ends at: the frontier is the Merkle tree of records 1..tip. */
  tip: ChainHead | null = null;
  private frontier = new MerkleFrontier();

  /** `appended`: told of every record hash the tree grows by, in order. */
  constructor(private readonly appended: (hash: string) => void) {}

  get size(): number {
    return this.frontier.size;
  }

  /** Starts over from a frontier found elsewhere (start-up verification, a checkpoint signed by another process). */
  reset(tip: ChainHead | null, frontier: MerkleFrontier): void {
    this.tip = tip;
    this.frontier = frontier;
  }

  /** A copy of the frontier as it is now (it goes on growing). */
  copy(): MerkleFrontier {
    return MerkleFrontier.parse(this.frontier.serialize());
  }

  /** A copy of the frontier when the tree ends exactly at `head`, else null. */
  copyAt(head: ChainHead): MerkleFrontier | null {
    return this.frontier.size === head.seq && this.tip?.hash === head.hash ? this.copy() : null;
  }

  seq(): number | undefined {
    return this.tip?.seq;
  }

  rootAt(size: number): string | undefined {
    return this.tip?.seq === size && this.frontier.size === size ? this.frontier.root() : undefined;
  }

  /** This process's commit, when it follows the tip; when other processes appended in between, it is left to catchUp. */
  extend(rows: ChronRow[]): void {
    if (rows[0].seq !== this.frontier.size + 1 || rows[0].prevHash !== (this.tip?.hash ?? GENESIS_HASH)) return;
    for (const row of rows) this.append(row);
  }

  /**
   * Extends the frontier with the stored records after its tip, up to `upTo`: each must follow the
   * one before, chain from it, and carry a valid tag (CLAIIM wrote it, here or in another process).
   * WARNING: this is what keeps a head signed over other processes' records as safe as one signed
   * over this process's own: a row no CLAIIM wrote, or one missing, is never signed over.
   */
  async catchUp(store: ChronStore, upTo: number, signer: ChronSigner): Promise<void> {
    if (this.frontier.size >= upTo) return;
    for await (const rows of linksAfter(store, this.frontier.size, upTo, 5000)) {
      for (const row of rows) {
        // This process's own commits may have extended the frontier meanwhile.
        if (row.seq <= this.frontier.size) continue;
        if (row.seq !== this.frontier.size + 1) throw missingRecord(this.frontier.size + 1);
        if (row.prevHash !== (this.tip?.hash ?? GENESIS_HASH)) throw new ChronBrokenError(`record ${row.seq} does not chain from the record before it`);
        if (tagVerdict(row.tag, row.hash, signer) !== "valid") throw new ChronBrokenError(`record ${row.seq} was not written by CLAIIM (no valid tag): no head is signed over it`);
        this.append(row);
      }
    }
    if (this.frontier.size < upTo) throw missingRecord(this.frontier.size + 1);
  }

  private append(row: ChronLink): void {
    this.frontier.append(row.hash);
    this.appended(row.hash);
    this.tip = { seq: row.seq, hash: row.hash };
  }
}
