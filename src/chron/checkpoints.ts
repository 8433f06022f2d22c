import type { Logger } from "../lib/logger";
import type { CheckpointerState } from "../ops/health";
import { ChronConflictError, type Checkpoint, type ChronStore } from "./chron-store";
import { MerkleFrontier } from "./merkle";
import type { ChainHead, ChronRow } from "./record";
import { lookupIn, signJws, type ChronKeyLookup, type ChronSigner } from "./signer";
import type { CheckpointClaims } from "./checkpoint-jws";
import { CommittedTree } from "./committed-tree";
import { ChronBrokenError, StoredTree } from "./stored-tree";
import { WitnessFeed, type Witnesses } from "./witness-feed";
import type { WitnessedHead } from "./witness";

export interface CheckpointPolicy {
  everyRecords: number;
  everySeconds: number;
}

/** The record a checkpoint is about, with the Merkle root of the tree of records 1..seq. */
interface Anchor extends ChainHead {
  root: string;
  frontier: string;
}

/** What start-up verification found: the chain's head, and the Merkle frontier at it. */
export interface ChronStart {
  head: ChainHead | null;
  frontier: MerkleFrontier;
}

/**
 * Signs tree heads (checkpoints): every `everyRecords` records or every `everySeconds` seconds,
 * whichever comes first (and only when the chain has grown), when it stops, and on demand at a
 * given record (for exports and retention). A checkpoint signs {sequence, hash, timestamp, count,
 * root} as a compact JWS with the Chron key (through its ChronSigner): the chain's hash at
 * `sequence`, and the RFC 6962 Merkle root of records 1..sequence. Every head that grows the tree
 * is also written to the witness log outside the database (with the consistency proof from the
 * head before) and offered to the remote witness. Once signed and witnessed, a rewritten or
 * shortened chain can no longer match it.
 *
 * WARNING: heads are signed from what the writer committed (the frontier kept in memory), never
 * from what the database says now: a row changed or deleted under a running CLAIIM cannot get
 * itself signed.
 */
export class Checkpointer {
  private last: Checkpoint | null = null;
  /** The highest record a checkpoint is signed or scheduled for: the next one is counted from it. */
  private covered = 0;
  /** The highest record known to be committed (by this process, or by another, as read at a tick). */
  private head: ChainHead | null = null;
  /** What was committed, as a Merkle frontier in memory: heads are signed from it. */
  private readonly tree: CommittedTree;
  /** Signs periodic heads: the process holding the coordinator's lease (see coordinate()). */
  private coordinating = true;
  /** Whether the lease is held this very moment (coordinating follows it through callbacks, which timers may delay). */
  private holds: () => boolean = () => true;
  private pending: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private unsignedSinceMs: number | null = null;
  private failing: { message: string; atMs: number } | null = null;
  private readonly lookup: ChronKeyLookup;
  /** The tree as the database stores it: read only to catch up, to sign below the head, and for proofs. */
  private readonly stored: StoredTree;
  private readonly feed: WitnessFeed | null;

  constructor(
    private readonly store: ChronStore,
    private readonly signer: ChronSigner,
    private readonly policy: CheckpointPolicy,
    private readonly logger: Logger,
    witnesses: Witnesses | null = null,
  ) {
    this.lookup = lookupIn(signer.publicKeys());
    this.stored = new StoredTree(store, this.lookup);
    this.feed = witnesses ? new WitnessFeed(witnesses, this.stored, logger) : null;
    this.tree = new CommittedTree((hash) => this.feed?.extend(hash));
  }

  /**
   * Starts from what start-up verification found, or else rebuilds the Merkle frontier from the
   * stored record hashes (one pass), refusing to go on if it disagrees with the root the last
   * checkpoint signed. Opens the witness log.
   */
  async start(from?: ChronStart): Promise<void> {
    this.last = await this.store.lastCheckpoint();
    this.covered = this.last?.seq ?? 0;
    if (from) {
      this.head = from.head;
      this.tree.reset(this.head, MerkleFrontier.parse(from.frontier.serialize()));
    } else {
      // The head is where the rebuilt frontier ends: records appended meanwhile are caught up with later.
      const { frontier, tip } = await this.stored.rebuild(this.last);
      this.head = tip;
      this.tree.reset(this.head, frontier);
    }
    await this.feed?.open(this.head?.seq ?? 0);
    if (this.head && this.head.seq > (this.last?.seq ?? 0)) this.unsignedSinceMs = Date.now();
    this.timer = setInterval(() => this.tick(), this.policy.everySeconds * 1000);
    this.timer.unref();
    this.due(false);
  }

  /** Signs a last head at what was committed, then stops; the remote witness gets its timeout to take it. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const head = this.head;
    if (head && head.seq > this.covered && this.coordinating) this.due(true);
    await this.idle();
    await this.feed?.close();
  }

  /** Settles once every checkpoint already due is written. */
  idle(): Promise<unknown> {
    return this.pending;
  }

  /** How signing fares, for readiness and the metrics. */
  health(): CheckpointerState {
    const lastSignedSeq = this.last?.seq ?? 0;
    const headSeq = this.head?.seq ?? 0;
    const unsigned = Math.max(0, headSeq - lastSignedSeq);
    return {
      lastSignedSeq,
      lastSignedAtMs: this.last?.tsMs ?? null,
      headSeq,
      unsigned,
      // WARNING: only the coordinator signs the periodic heads; on the other processes the unsigned
      // tail is not theirs to sign, so it never makes them look stuck (nor not ready).
      lagSeconds: this.coordinating && unsigned > 0 && this.unsignedSinceMs !== null ? (Date.now() - this.unsignedSinceMs) / 1000 : 0,
      failing: this.failing,
    };
  }

  /**
   * Called after every commit of this process's writer, with its rows in order. When other
   * processes appended since the frontier's tip, the rows cannot extend it here: the next signing
   * reads the records in between from the store and checks each (catchUp).
   */
  committed(rows: ChronRow[]): void {
    if (this.unsignedSinceMs === null) this.unsignedSinceMs = Date.now();
    this.tree.extend(rows);
    const last = rows[rows.length - 1];
    if (last.seq > (this.head?.seq ?? 0)) this.head = { seq: last.seq, hash: last.hash };
    this.due(false);
  }

  /**
   * Makes this process the coordinator (it signs a head every period, and at stop) or not (it
   * signs only on demand: at(), for exports, retention and key changes). A new coordinator goes on
   * from the last head signed in the database when that is beyond its own frontier: the signature
   * and the Merkle root are checked against the frontier stored with it, and the witness log's next
   * line proves consistency from this process's last witnessed head (WitnessFeed.publish).
   */
  async coordinate(on: boolean, holds: () => boolean = () => on): Promise<void> {
    this.coordinating = on;
    this.holds = holds;
    if (!on) return;
    const task = this.pending.then(async () => {
      const last = await this.store.lastCheckpoint();
      if (last) this.last = last;
      if (last?.frontier && last.seq > this.tree.size) {
        const frontier = MerkleFrontier.parse(last.frontier);
        this.stored.checkAgainst(last, frontier);
        this.tree.reset({ seq: last.seq, hash: last.hash }, frontier);
        this.feed?.forget();
      }
      this.covered = Math.max(this.covered, last?.seq ?? 0);
    });
    this.pending = task.catch((err: Error) => this.logger.error("chron coordinator could not take over the last signed head", { error: err.message }));
    await this.pending;
    // The next tick of the timer (within everySeconds) signs what the others wrote meanwhile.
  }

  /** The period's work of the coordinator: learn the chain's head (other processes write too), and sign it if it grew. */
  private tick(): void {
    if (!this.coordinating) return;
    this.store
      .head()
      .then((found) => {
        if (found && found.seq > (this.head?.seq ?? 0)) this.head = found;
        this.due(true);
      })
      .catch((err: Error) => this.logger.error("chron checkpoint: the chain's head could not be read", { error: err.message }));
  }

  /** The keys that verify Chron's signatures. */
  keys(): ChronKeyLookup {
    return this.lookup;
  }

  /** The last head the local witness log holds. */
  lastWitnessed(): WitnessedHead | null {
    return this.feed?.last() ?? null;
  }

  /**
   * Signs a checkpoint at exactly this record, unless one exists; serialised with the periodic
   * ones. At this process's head, `record` must be what it committed; below it, the stored hashes
   * must rebuild the root of the next signed head (or of the head in memory), or nothing is signed.
   */
  at(record: ChainHead): Promise<Checkpoint> {
    const atHead = this.tree.tip?.seq === record.seq && this.tree.size === record.seq;
    if (atHead && this.tree.tip!.hash !== record.hash) return Promise.reject(new ChronBrokenError(`record ${record.seq} is not the record CLAIIM committed there`));
    const current = atHead ? this.tree.copy() : null;
    const next = this.pending.then(async () => {
      const existing = (await this.store.checkpoints(record.seq - 1, 1))[0];
      if (existing?.seq === record.seq) return existing;
      const frontier = current ?? (await this.stored.frontierAt(record.seq, { hash: record.hash, committed: this.tree }));
      return this.sign(this.anchor(record, frontier));
    });
    this.pending = next.catch(() => undefined);
    return next;
  }

  /** A compact JWS of {header_sha256: digest}, for export headers. */
  signDigest(digest: string): Promise<string> {
    return signJws(this.signer, { header_sha256: digest });
  }

  keyFor(kid: string) {
    return this.lookup(kid);
  }

  /** The consistency proof between a witnessed head and a later tree size, from the stored hashes (StoredTree.proofBetween). */
  proofBetween(from: { size: number; root: string }, to: { tree_size: number }): Promise<string[]> {
    return this.stored.proofBetween(from, to);
  }

  /** The Merkle frontier of the records before `seq` (for an export's header), from the stored hashes. */
  frontierBefore(seq: number): Promise<MerkleFrontier> {
    return this.stored.frontierAt(seq - 1);
  }

  private anchor(record: ChainHead, frontier: MerkleFrontier): Anchor {
    return { ...record, root: frontier.root(), frontier: frontier.serialize() };
  }

  private due(timer: boolean): void {
    if (!this.coordinating || !this.holds()) return;
    const head = this.head;
    if (!head || head.seq <= this.covered) return;
    if (!timer && head.seq - this.covered < this.policy.everyRecords) return;
    this.covered = head.seq;
    // The frontier is taken now: by the time the signing runs, it may have grown.
    const frontier = this.tree.copyAt(head);
    this.pending = this.pending
      .then(async () => {
        if (head.seq <= (this.last?.seq ?? 0) || !this.holds()) return;
        if (frontier) return void (await this.sign(this.anchor(head, frontier)));
        // Other processes' records lie between the frontier and the head: read and check them, then sign at the tip reached.
        await this.tree.catchUp(this.store, head.seq, this.signer);
        await this.sign(this.anchor(this.tree.tip!, this.tree.copy()));
      })
      .catch((err: Error) => {
        this.covered = this.last?.seq ?? 0;
        this.failing = { message: err.message, atMs: Date.now() };
        this.logger.error("chron checkpoint failed", { error: err.message, seq: head.seq });
      });
  }

  private async sign(record: Anchor): Promise<Checkpoint> {
    const now = new Date();
    const claims: CheckpointClaims = { sequence: record.seq, hash: record.hash, timestamp: now.toISOString(), count: record.seq, root: record.root };
    const jws = await signJws(this.signer, claims);
    const checkpoint: Checkpoint = { seq: record.seq, hash: record.hash, tsMs: now.getTime(), count: record.seq, kid: this.signer.kid, jws, frontier: record.frontier };
    try {
      await this.store.insertCheckpoint(checkpoint);
    } catch (err) {
      // Another CLAIIM process signed this record first (on demand, or as the coordinator before a takeover): that head stands.
      const theirs = err instanceof ChronConflictError ? (await this.store.checkpoints(record.seq - 1, 1))[0] : undefined;
      if (theirs?.seq !== record.seq || theirs.hash !== record.hash) throw err;
      if (!this.last || theirs.seq > this.last.seq) this.last = theirs;
      this.covered = Math.max(this.covered, theirs.seq);
      return theirs;
    }
    if (!this.last || checkpoint.seq > this.last.seq) this.last = checkpoint;
    this.failing = null;
    // What was committed after this checkpoint's record waits from now (a slight underestimate).
    this.unsignedSinceMs = (this.head?.seq ?? 0) > this.last.seq ? Date.now() : null;
    this.covered = Math.max(this.covered, checkpoint.seq);
    if (this.feed?.grows(checkpoint.seq)) await this.feed.publish(checkpoint, claims, record.frontier, () => this.tree.seq());
    return checkpoint;
  }
}
