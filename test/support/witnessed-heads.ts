import { randomBytes } from "node:crypto";
import { consistencyProof, MerkleFrontier } from "../../src/chron/merkle";
import type { WitnessedHead } from "../../src/chron/witness";

/**
 * Tree heads of a made-up log, with real RFC 9162 consistency proofs between them: each head's
 * proof is from the one before in `sizes`. A witness checks the proofs, not the signatures (it
 * holds no keys of the CLAIIM it witnesses), so `jws` is a placeholder.
 */
export class MadeUpLog {
  constructor(private readonly leaves: string[] = []) {}

  /** Another log, with the same first `at` leaves as this one and others after them: a fork. */
  fork(at: number): MadeUpLog {
    return new MadeUpLog(this.leaves.slice(0, at));
  }

  /** The head at `size`, proven from the head at `from` (null: no proof); leaves are added as needed. */
  head(size: number, from: number | null): WitnessedHead {
    while (this.leaves.length < size) this.leaves.push(randomBytes(32).toString("hex"));
    const leaves = this.leaves.slice(0, size);
    const frontier = new MerkleFrontier();
    for (const leaf of leaves.slice(0, from ?? 0)) frontier.append(leaf);
    const fromRoot = frontier.root();
    const proof = from === null ? [] : consistencyProof(frontier, leaves.slice(from, size));
    const whole = new MerkleFrontier();
    for (const leaf of leaves) whole.append(leaf);
    return {
      chron_witness: 1,
      tree_size: size,
      root: whole.root(),
      hash: randomBytes(32).toString("hex"),
      timestamp: new Date().toISOString(),
      kid: "made-up",
      jws: "made.up.jws",
      consistency: from === null ? null : { from_size: from, from_root: fromRoot, proof },
    };
  }
}
