import type { Logger } from "../lib/logger";
import type { Checkpoint } from "./chron-store";
import type { CheckpointClaims } from "./checkpoint-jws";
import { consistencyProof, MerkleFrontier } from "./merkle";
import type { RemoteWitness } from "./remote-witness";
import type { StoredTree } from "./stored-tree";
import type { WitnessedHead, WitnessLog } from "./witness";

/** Where signed tree heads go besides the database: the local witness log, and a remote witness. */
export interface Witnesses {
  log: WitnessLog;
  remote: RemoteWitness | null;
}

/**
 * Hands every signed head that grows the tree to the witnesses: appended to the local witness log
 * with the consistency proof from the head before it, and offered to the remote witness. The proof
 * comes from the record hashes committed since the last witnessed head when this process saw them
 * all (`extend`), else from the stored records (StoredTree).
 */
export class WitnessFeed {
  /** The last head the witness log holds, with the frontier at it. */
  private witnessed: { head: WitnessedHead; frontier: string | null } | null = null;
  /** Record hashes after the witnessed head, in order, up to this process's head; null when not known (then read from the store). */
  private sinceWitnessed: string[] | null = null;

  constructor(
    private readonly witnesses: Witnesses,
    private readonly tree: StoredTree,
    private readonly logger: Logger,
  ) {}

  /** Opens the witness log; `headSeq` is the chain's head this process starts from. */
  async open(headSeq: number): Promise<void> {
    const head = await this.witnesses.log.open(this.logger);
    this.witnessed = head ? { head, frontier: null } : null;
    this.sinceWitnessed = head && head.tree_size === headSeq ? [] : null;
  }

  /** The record committed next after the ones seen so far. */
  extend(hash: string): void {
    this.sinceWitnessed?.push(hash);
  }

  /** Records were committed that this process did not see: the next proof is read from the store. */
  forget(): void {
    this.sinceWitnessed = null;
  }

  /** The last head the local witness log holds. */
  last(): WitnessedHead | null {
    return this.witnessed?.head ?? null;
  }

  /** Whether checkpoint `seq` grows the witnessed tree. */
  grows(seq: number): boolean {
    return seq > (this.witnessed?.head.tree_size ?? 0);
  }

  /**
   * Appends a signed head to the witness log, with the consistency proof from the head before it,
   * and offers it to the remote witness. A failure is logged: the checkpoint stands, and the next
   * head is proven from the last one the log holds. `tipSeq`: where this process's tree in memory ends.
   */
  async publish(cp: Checkpoint, claims: CheckpointClaims, frontier: string, tipSeq: () => number | undefined): Promise<void> {
    const previous = this.witnessed;
    try {
      let consistency: WitnessedHead["consistency"] = null;
      if (previous) {
        const from = previous.head.tree_size;
        const known = this.sinceWitnessed && this.sinceWitnessed.length >= cp.seq - from ? this.sinceWitnessed.slice(0, cp.seq - from) : null;
        const prefix = previous.frontier ? MerkleFrontier.parse(previous.frontier) : await this.tree.frontierAt(from);
        const proof = known ? consistencyProof(prefix, known) : await this.tree.proofBetween({ size: from, root: previous.head.root }, { tree_size: cp.seq });
        consistency = { from_size: from, from_root: previous.head.root, proof };
      }
      const head: WitnessedHead = { chron_witness: 1, tree_size: cp.seq, root: claims.root!, hash: cp.hash, timestamp: claims.timestamp, kid: cp.kid, jws: cp.jws, consistency };
      await this.witnesses.log.append(head);
      this.witnessed = { head, frontier };
      const consumed = cp.seq - (previous?.head.tree_size ?? 0);
      this.sinceWitnessed = this.sinceWitnessed && this.sinceWitnessed.length >= consumed ? this.sinceWitnessed.slice(consumed) : tipSeq() === cp.seq ? [] : null;
      this.witnesses.remote?.offer(head);
    } catch (err) {
      this.logger.error("witness log: a signed tree head could not be written", { error: (err as Error).message, seq: cp.seq, file: this.witnesses.log.file });
    }
  }

  /** The remote witness gets its timeout to take the last head; the log is closed. */
  async close(): Promise<void> {
    await this.witnesses.remote?.stop();
    await this.witnesses.log.close();
  }
}
