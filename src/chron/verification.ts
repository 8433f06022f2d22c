import fs from "node:fs";
import { ConflictError, InputError, NotFoundError, ServiceUnavailableError } from "../lib/errors";
import { INTERACTIVE, LiveWork, Pacer } from "../lib/pacer";
import { retentionAnchor, rowsAfter, type Checkpoint, type ChronStore } from "./chron-store";
import { consistencyProof, MerkleFrontier } from "./merkle";
import type { ChronWriter } from "./chron-writer";
import { GENESIS_HASH, type ChainHead, type ChronContent, type ChronRow } from "./record";
import { tagVerdict } from "./signer";
import { readWitnessLog } from "./witness";
import { verifyCheckpoint } from "./checkpoint-jws";
import type { ConsistencyResult, VerifyContext, VerifyProblem, VerifyResult, VerifyScope } from "./verify-types";
import { BAD_TAG, canonicalText, columnProblem, NOT_CANONICAL, rowProblems, TagTrail } from "./row-checks";
import { CheckpointCursor, ProblemList, WitnessCursor } from "./verify-cursors";

const VERIFY_PAGE = 1000;

/**
 * Verifying Chron as stored: the whole chain against its checkpoints, the writer's tags and the
 * witness (verify, verifyAll at start-up), a segment before an export, a stored row's own checks,
 * and consistency proofs between two tree sizes.
 */
export class ChronVerifier {
  constructor(
    private readonly store: ChronStore,
    private readonly writer: ChronWriter,
    private readonly ctx: VerifyContext,
    /** Verification gives way to live decisions (see Pacer). */
    private readonly live: LiveWork = new LiveWork(),
  ) {}

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
    const kept = await retentionAnchor(this.store);
    if (kept) {
      const anchor = kept.checkpoint;
      if (!anchor?.frontier) {
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
      prevHash = anchor ? anchor.hash : prevHash;
      after = kept.first - 1;
    }
    const pacer = new Pacer(this.live, INTERACTIVE);
    for await (const rows of rowsAfter(this.store, after, undefined, VERIFY_PAGE)) {
      for (const row of rows) {
        await pacer.tick();
        const problems = rowProblems(row, expectedSeq, prevHash);
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
    let at = start.size;
    for await (const rows of rowsAfter(this.store, at, second, VERIFY_PAGE)) {
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
   * Checks records from..to (inclusive) against the chain, starting from `prevHash`; the first
   * problem, or null when intact. `unsigned`: no signed head covers them yet, so each must carry
   * CLAIIM's tag (before CLAIIM signs over them).
   */
  async verifySegment(from: number, to: number, prevHash: string, unsigned = false): Promise<VerifyProblem | null> {
    let expected = from;
    let prev = prevHash;
    const pacer = new Pacer(this.live, INTERACTIVE);
    for await (const rows of rowsAfter(this.store, from - 1, to, VERIFY_PAGE)) {
      for (const row of rows) {
        await pacer.tick();
        const [problem] = rowProblems(row, expected, prev);
        if (problem) return problem;
        if (unsigned && this.ctx.signer && tagVerdict(row.tag, row.hash, this.ctx.signer) !== "valid") return { seq: row.seq, problem: "not written by CLAIIM: no valid writer's tag" };
        expected = row.seq + 1;
        prev = row.hash;
      }
    }
    return expected === to + 1 ? null : { seq: expected, problem: `sequence gap: expected record ${expected}` };
  }
}
