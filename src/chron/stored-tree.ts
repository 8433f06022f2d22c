import { linksAfter, type Checkpoint, type ChronStore } from "./chron-store";
import { consistencyProof, MerkleFrontier } from "./merkle";
import type { ChainHead } from "./record";
import type { ChronKeyLookup } from "./signer";
import { verifyCheckpoint } from "./checkpoint-jws";

/** A checkpoint CLAIIM refused to sign, because the stored records disagree with what is signed or committed. */
export class ChronBrokenError extends Error {}

/** The chain read in order skips record `seq`. */
export function missingRecord(seq: number): ChronBrokenError {
  return new ChronBrokenError(`Chron's records do not run contiguously: record ${seq} is missing`);
}

/** The head this process committed, as it is when asked (commits go on while the store is read). */
export interface InMemoryHead {
  seq(): number | undefined;
  /** The Merkle root at `size`, when the tree in memory ends exactly there. */
  rootAt(size: number): string | undefined;
}

/** How many stored records one read brings, when the tree is rebuilt from them. */
const PAGE = 5000;

/**
 * The Merkle tree of the records as the database stores them, read back: rebuilt from the record
 * hashes, starting from a checkpoint's stored frontier where there is one. Every frontier taken
 * from a checkpoint is checked against the root that checkpoint signs, so that the stored records
 * can only rebuild what was signed. The Checkpointer reads the database through it, never directly.
 */
export class StoredTree {
  constructor(
    private readonly store: ChronStore,
    private readonly lookup: ChronKeyLookup,
  ) {}

  /** Throws when `frontier` does not have the root that checkpoint `cp` signs. */
  checkAgainst(cp: Checkpoint, frontier: MerkleFrontier): void {
    const claims = verifyCheckpoint(cp.jws, this.lookup);
    if (claims.root !== undefined && claims.root !== frontier.root()) {
      throw new ChronBrokenError(`the stored Chron records do not match the Merkle root signed at checkpoint ${cp.seq}: the trail was tampered with`);
    }
  }

  /**
   * The frontier of the whole stored chain (one pass over the record hashes, from the retention
   * checkpoint when records were pruned), checked against `last`, the last checkpoint signed, on
   * the way past it. `tip` is the record the frontier ends at (records appended since are not in it).
   */
  async rebuild(last: Checkpoint | null): Promise<{ frontier: MerkleFrontier; tip: ChainHead | null }> {
    let frontier = new MerkleFrontier();
    let tip: ChainHead | null = null;
    let after = 0;
    const kept = await this.store.bounds({});
    if (kept && kept.first > 1) {
      // Records before `first` were archived and pruned: the checkpoint they end at carries the frontier.
      const anchor = await this.store.checkpointAtOrBefore(kept.first - 1);
      if (anchor?.seq !== kept.first - 1 || !anchor.frontier) throw new Error(`Chron starts at record ${kept.first} without the retention checkpoint before it`);
      frontier = MerkleFrontier.parse(anchor.frontier);
      this.checkAgainst(anchor, frontier);
      after = anchor.seq;
      tip = { seq: anchor.seq, hash: anchor.hash };
    }
    for await (const rows of linksAfter(this.store, after, kept?.last ?? 0, PAGE)) {
      for (const row of rows) {
        if (row.seq !== frontier.size + 1) throw missingRecord(frontier.size + 1);
        frontier.append(row.hash);
        tip = { seq: row.seq, hash: row.hash };
        if (last && row.seq === last.seq) this.checkAgainst(last, frontier);
      }
    }
    return { frontier, tip };
  }

  /** Stored record hashes after `after`, up to `upTo`. */
  async hashes(after: number, upTo: number): Promise<string[]> {
    const out: string[] = [];
    if (after >= upTo) return out;
    for await (const rows of linksAfter(this.store, after, upTo, PAGE)) for (const row of rows) out.push(row.hash);
    return out;
  }

  /**
   * The consistency proof between the tree of `from.size` records (which must be a witnessed head,
   * so that a checkpoint stores the frontier there) and the tree of `to`, from the stored hashes.
   */
  async proofBetween(from: { size: number; root: string }, to: { tree_size: number }): Promise<string[]> {
    const prefix = await this.frontierAt(from.size);
    if (prefix.root() !== from.root) throw new ChronBrokenError(`the stored records do not rebuild the witnessed root at ${from.size}`);
    return consistencyProof(prefix, await this.hashes(from.size, to.tree_size));
  }

  /**
   * The frontier at record `seq`, from the stored hashes: from the nearest checkpoint at or before
   * it that stores one (checked against the root it signs), or from the first record. With
   * `expected`, the records after `seq` are read on to the next signed head (or to the head in
   * memory, `expected.committed`) and must rebuild its root, and record `seq` must have
   * `expected.hash`: so that nothing rewritten since is ever signed.
   */
  async frontierAt(seq: number, expected?: { hash: string; committed: InMemoryHead }): Promise<MerkleFrontier> {
    let frontier = new MerkleFrontier();
    let after = 0;
    const from = await this.store.checkpointAtOrBefore(seq);
    if (from?.frontier) {
      frontier = MerkleFrontier.parse(from.frontier);
      this.checkAgainst(from, frontier);
      after = from.seq;
    } else {
      const kept = await this.store.bounds({});
      if (kept && kept.first > 1) throw new ChronBrokenError(`Chron starts at record ${kept.first} without the retention checkpoint before it`);
    }
    const next = expected === undefined ? undefined : (await this.store.checkpoints(seq, 1))[0];
    const upTo = expected === undefined ? seq : (next?.seq ?? Math.max(seq, expected.committed.seq() ?? seq));
    let atSeq: MerkleFrontier | null = frontier.size === seq ? MerkleFrontier.parse(frontier.serialize()) : null;
    let hashAtSeq: string | null = null;
    if (after < upTo) {
      for await (const rows of linksAfter(this.store, after, upTo, PAGE)) {
        for (const row of rows) {
          if (row.seq !== frontier.size + 1) throw missingRecord(frontier.size + 1);
          frontier.append(row.hash);
          if (row.seq === seq) {
            atSeq = MerkleFrontier.parse(frontier.serialize());
            hashAtSeq = row.hash;
          }
        }
      }
    }
    if (!atSeq || frontier.size !== upTo) throw new ChronBrokenError(`Chron's records do not run contiguously up to ${upTo}`);
    if (expected !== undefined) {
      if (hashAtSeq !== null && hashAtSeq !== expected.hash) throw new ChronBrokenError(`record ${seq} changed while CLAIIM was signing it`);
      const signedRoot = next ? verifyCheckpoint(next.jws, this.lookup).root : expected.committed.rootAt(upTo);
      if (signedRoot !== undefined && signedRoot !== frontier.root()) {
        throw new ChronBrokenError(`the stored records up to ${upTo} do not rebuild the Merkle root ${next ? "signed at that checkpoint" : "CLAIIM committed"}: CLAIIM will not sign over them`);
      }
    }
    return atSeq;
  }
}
